-- One row per transaction as delivered, with typed and renamed columns.
select
    id as transaction_id,
    customer_id,
    amount,
    currency,
    created_at,
    cast(created_at as date) as created_date,
    _sluice_batch
from {{ source('raw', 'transactions') }}
