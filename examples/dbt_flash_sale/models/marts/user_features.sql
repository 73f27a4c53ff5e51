-- Per-user features: activity counts and the behaviour sequence the encoder reads.
select
    user_id,
    count(*) as events,
    count(*) filter (where event_type = 'purchase') as purchases,
    count(*) filter (where event_type = 'cart') as carts,
    max(ts) as last_seen,
    behavior_sequence(event_type, category_id, ts) as seq
from {{ ref('stg_events') }}
group by user_id
