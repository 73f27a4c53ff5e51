-- Trains flashsql's purchase model on the training rows (a new version each run) and keeps
-- its per-epoch report.
select *
from train_model('dbt_buyers',
                 (select * from {{ ref('training_rows') }}),
                 epochs => 2, split => 'time', seed => 1)
