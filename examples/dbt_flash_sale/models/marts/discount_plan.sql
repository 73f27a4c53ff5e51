-- The discount per item of campaign 1 that maximises profit within a subsidy budget, from
-- the purchase model's predictions for 200 users.
-- depends_on: {{ ref('purchase_model') }}
select *
from optimize_discounts((
    select c.item_id, d.discount, i.base_price as price, i.unit_cost,
           c.allotment as inventory,
           sum(purchase_prob('dbt_buyers', s.seq, i.category_id, i.base_price, d.discount,
                             1.0, 12.0)) as expected_units
    from {{ source('shop', 'campaigns') }} c
    join {{ source('shop', 'items') }} i using (item_id)
    cross join (values (0.0), (0.1), (0.2), (0.3)) as d(discount)
    cross join (select user_id, behavior_sequence(event_type, category_id, ts) as seq
                from {{ ref('stg_events') }} group by user_id order by user_id limit 200) s
    where c.campaign_id = 1
    group by c.item_id, d.discount, i.base_price, i.unit_cost, c.allotment
), budget => 500, objective => 'profit')
