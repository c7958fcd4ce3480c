{{ config(materialized='ephemeral') }}
{#- Amounts in USD at fixed rates; inlined as a CTE wherever it is referenced. -#}
{% set usd_per = {'USD': 1.0, 'EUR': 1.08, 'GBP': 1.27} %}
select
    *,
    round(amount * case currency
        {%- for currency, rate in usd_per.items() %}
        when '{{ currency }}' then {{ rate }}
        {%- endfor %}
    end, 2) as amount_usd
from {{ ref('stg_transactions') }}
