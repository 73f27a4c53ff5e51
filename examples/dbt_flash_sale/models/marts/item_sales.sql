{{ config(materialized='incremental', unique_key='item_id', incremental_strategy='merge') }}
-- Units sold per item; each run recounts and MERGEs the counts in: items sold before are
-- updated in place, newly sold items are added.
select item_id, count(*) as purchases, max(ts) as last_purchase
from {{ ref('stg_events') }}
where event_type = 'purchase'
group by item_id
