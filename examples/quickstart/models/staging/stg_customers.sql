select
    id as customer_id,
    name,
    country,
    signed_up,
    _sluice_batch
from {{ source('raw', 'customers') }}
