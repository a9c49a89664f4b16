#!/usr/bin/env bash
# Installs what is missing, builds Flotilla (release) and runs the embedded single-node
# cluster. Arguments go to `flotilla up` (e.g. --data-dir DIR --port PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
echo "==> building flotilla (release; the first build takes a few minutes)"
cargo build --release --bin flotilla
exec "$CARGO_TARGET_DIR/release/flotilla" up "$@"
