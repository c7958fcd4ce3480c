{#- a view over the raw table, through source() -#}
select
    id,
    customer_id,
    amount,
    _sluice_batch
from {{ source('shop', 'orders') }}
