{{ config(unique_key='transaction_id', incremental_strategy='merge') }}
-- Upserted on transaction_id: a transaction delivered again replaces its earlier row.
select transaction_id, customer_id, amount, currency, amount_usd, created_at, created_date, _sluice_batch
from {{ ref('int_transactions_usd') }}
where {{ new_rows() }}
-- a merge needs one row per key in each run: keep the latest delivery
qualify row_number() over (partition by transaction_id order by _sluice_batch desc) = 1
