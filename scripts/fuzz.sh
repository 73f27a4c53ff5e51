#!/usr/bin/env bash
# The SQL and protocol fuzzers (tests/it/fuzz_sql.rs, tests/it/fuzz_wire.rs) for longer than
# CI runs them, against the release server (the fuzzers themselves run from the debug test
# build, which CI already has). Each prints its inputs per second and fails on a dead server,
# a lost connection, an unanswered input, a logged panic or an XX000 error.
# usage: scripts/fuzz.sh [seconds per fuzzer, default 600] [seed, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASHSQL_FUZZ_SECS="${1:-600}"
export FLASHSQL_FUZZ_SEED="${2:-1}"
cargo build --release
export FLASHSQL_SERVER_BINARY="${CARGO_TARGET_DIR:-$PWD/target}/release/flashsql"
cargo test --test it fuzz_ -- --nocapture --test-threads 1
