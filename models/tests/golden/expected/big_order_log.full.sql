WITH __dbt__cte__eph_big_orders AS (

select * from "main"."stg_orders" where amount > 100
)
SELECT * FROM (

select id, amount from __dbt__cte__eph_big_orders
where true
  and 'main' = 'main'
) AS "big_order_log"
