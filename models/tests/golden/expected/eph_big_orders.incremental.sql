
select * from "main"."stg_orders" where amount > 100
