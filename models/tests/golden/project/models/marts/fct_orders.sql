{{ config(unique_key='id', incremental_strategy='merge') }}
-- merge the newest rows of each order
select o.id, o.customer_id, o.amount, o._sluice_batch
from {{ ref('stg_orders') }} as o
{% if is_incremental() %}
where {{ new_rows('o') }}
  and o.id not in (select id from {{ this }} where amount < 0)
{% endif %}
