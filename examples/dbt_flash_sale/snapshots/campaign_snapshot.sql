{% snapshot campaign_snapshot %}
{{ config(target_schema='snapshots', unique_key='campaign_key', strategy='check', check_cols=['discount', 'allotment']) }}
select campaign_id * 1000000 + item_id as campaign_key, campaign_id, item_id, discount, allotment
from {{ source('shop', 'campaigns') }}
{% endsnapshot %}
