

select
    customer_id,
    sum(amount) as total_amount,
    sum(id) as total_id
from "raw"."orders"
where customer_id in (select customer_id from "raw"."orders" where true)
group by customer_id
