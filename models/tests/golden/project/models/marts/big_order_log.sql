{{ config(materialized='incremental') }}
select id, amount from {{ ref('eph_big_orders') }}
where {{ new_rows() }}
  and '{{ this.schema }}' = 'main'
