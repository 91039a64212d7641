#!/usr/bin/env bash
# Builds the release daemon and the measurement tool, then measures (see docs/performance.md).
#   scripts/measure.sh --packs 4 --window 60 --repeat 3
#   scripts/measure.sh --packs 16 --layout bus --poll-ms 100 --window 30
#   scripts/measure.sh --packs 4 --command 'other-daemon {ports}' --label other
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin bms-bridge --example measure
exec target/release/examples/measure "$@"
