
-- merge the newest rows of each order
select o.id, o.customer_id, o.amount, o._sluice_batch
from "main"."stg_orders" as o

where "o"."_sluice_batch" > 41
  and o.id not in (select id from "main"."fct_orders" where amount < 0)
