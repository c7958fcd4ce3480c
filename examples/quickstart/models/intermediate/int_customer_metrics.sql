-- Rebuilt (materialized='table', from dbt_project.yml) after commits that touch its inputs.
select
    c.customer_id,
    c.country,
    count(t.transaction_id) as transactions,
    coalesce(sum(t.amount_usd), 0) as revenue_usd,
    min(t.created_at) as first_purchase_at,
    max(t.created_at) as last_purchase_at
from {{ ref('stg_customers') }} as c
left join {{ ref('int_transactions_usd') }} as t using (customer_id)
group by c.customer_id, c.country
