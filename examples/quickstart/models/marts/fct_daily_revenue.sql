{{ config(unique_key=['created_date', 'currency'], incremental_strategy='delete+insert') }}
-- An aggregate kept incrementally: only the days and currencies touched by new rows are
-- recomputed (delete+insert on the key), the rest of the table is left alone.
select
    created_date,
    currency,
    count(*) as transactions,
    sum(amount) as revenue,
    sum(amount_usd) as revenue_usd
from {{ ref('int_transactions_usd') }}
{% if is_incremental() %}
where (created_date, currency) in (
    select (created_date, currency) from {{ ref('stg_transactions') }} where {{ new_rows() }}
)
{% endif %}
group by created_date, currency
