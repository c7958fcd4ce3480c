

select
    customer_id,
    sum(amount) as total_amount,
    sum(id) as total_id
from "raw"."orders"
where customer_id in (select customer_id from "raw"."orders" where "_sluice_batch" > 41)
group by customer_id
