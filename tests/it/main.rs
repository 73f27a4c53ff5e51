//! Integration tests: the real `flashsql` binary over TCP with real clients.

mod auth;
mod clients;
mod common;
mod conformance;
mod copy;
mod crash;
mod dbt;
mod decisions;
mod docs;
mod durability;
mod errors;
mod frontend;
mod fuzz_sql;
mod fuzz_wire;
mod hostile;
mod loading;
mod merge;
mod protocol;
mod psql;
mod real_data;
mod sessions;
mod slt;
mod sql_grammar;
mod tls;
mod transactions;
mod wire_faults;
