{{ config(unique_key=['customer_id'], incremental_strategy='delete+insert') }}
{% set measures = ['amount', 'id'] %}
select
    customer_id,
    {%- for m in measures %}
    sum({{ m }}) as total_{{ m }}{{ "," if not loop.last }}
    {%- endfor %}
from {{ ref('orders') }}
where customer_id in (select customer_id from {{ ref('orders') }} where {{ new_rows() }})
group by customer_id
