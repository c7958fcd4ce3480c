{{ config(incremental_strategy='append') }}
-- Appended: each run inserts the new large transactions.
select transaction_id, customer_id, amount_usd, created_at
from {{ ref('int_transactions_usd') }}
where amount_usd >= 400 and {{ new_rows() }}
