select
    id,
    customer_id,
    amount,
    _sluice_batch
from "raw"."orders"
