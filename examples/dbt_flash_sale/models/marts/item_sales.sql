{{ config(materialized='incremental', unique_key='item_id', incremental_strategy='delete+insert') }}
-- Units sold per item, each run replaces the rows of the items it recounts (delete+insert on item_id; MERGE is not supported).
select item_id, count(*) as purchases, max(ts) as last_purchase
from {{ ref('stg_events') }}
where event_type = 'purchase'
group by item_id
