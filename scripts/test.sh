#!/usr/bin/env bash
# Installs what is missing, then runs every check: formatting, clippy, and all tests
# (unit, in-process cluster, process-level end-to-end and chaos) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> building (the chaos and end-to-end tests run the flotilla and loadtest-webhook binaries)"
cargo build -p flotilla -p admission-webhook -p metrics-server --bin flotilla --bin loadtest-webhook --bin flotilla-metrics-server
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
