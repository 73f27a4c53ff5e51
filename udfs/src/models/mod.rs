//! Models in SQL: `train_model`, `purchase_prob`, `user_embedding`, the `flashsql_models`
//! table and `drop_model`, all over one [`ModelStore`] shared by every session.

pub mod catalog;
pub mod explain;
pub mod features;
pub mod score;
pub mod train_sql;
