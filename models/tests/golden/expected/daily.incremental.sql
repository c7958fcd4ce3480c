
select count(*) as n from "main"."fct_orders"
