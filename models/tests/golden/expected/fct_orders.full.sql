
-- merge the newest rows of each order
select o.id, o.customer_id, o.amount, o._sluice_batch
from "main"."stg_orders" as o
