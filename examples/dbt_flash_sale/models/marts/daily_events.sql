{{ config(materialized='incremental', unique_key='day_key', incremental_strategy='delete+insert') }}
-- One row per day and event type; each run adds the days it has not seen and refreshes the
-- latest one.
select
    cast(date_trunc('day', ts) as date) || '/' || event_type as day_key,
    cast(date_trunc('day', ts) as date) as day,
    event_type,
    count(*) as n
from {{ ref('stg_events') }}
{% if is_incremental() %}
where ts >= (select max(day) from {{ this }})
{% endif %}
group by 1, 2, 3
