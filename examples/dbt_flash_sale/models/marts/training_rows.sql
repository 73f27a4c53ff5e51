-- One row per offer shown: was it bought, the user's behaviour before it, and the offer.
select x.exposure_id, x.user_id, x.purchased as label, s.seq, i.category_id,
       i.base_price as price, x.discount, x.time_left,
       cast(date_part('hour', x.shown_ts) as double) as hour, x.shown_ts as ts
from {{ source('shop', 'exposures') }} x
join {{ source('shop', 'items') }} i on i.item_id = x.item_id
left join (
    select x.exposure_id, behavior_sequence(e.event_type, e.category_id, e.ts) as seq
    from {{ source('shop', 'exposures') }} x
    join {{ ref('stg_events') }} e on e.user_id = x.user_id and e.ts < x.shown_ts
    group by x.exposure_id
) s on s.exposure_id = x.exposure_id
