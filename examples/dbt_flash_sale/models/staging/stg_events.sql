-- The behaviour log, cleaned: one row per distinct event, impossible rows dropped,
-- event types normalised to lower case.
select distinct
    user_id,
    item_id,
    category_id,
    lower(trim(event_type)) as event_type,
    ts
from {{ source('shop', 'events') }}
where user_id is not null
  and item_id is not null
  and ts is not null
