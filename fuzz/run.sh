#!/usr/bin/env bash
# Runs every fuzz target one after another for SECONDS each (default 300) and prints the
# executions reached; crashes land in fuzz/artifacts/<target>/. Stable toolchain: RUSTC_BOOTSTRAP.
#   fuzz/run.sh [SECONDS] [TARGET...]
# RUNS=10000000 stops a target once it reached that many executions (SECONDS is then a cap);
# config_parse is capped at 4 KiB inputs (the uncommented example config is 3.5 KiB): longer
# inputs only add comment text, and cost parse time.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_jbd decode_jbd_up16s decode_jk_pb decode_renogy decode_eg4_ll decode_foxess
           decode_jk_rs485 decode_daly decode_eg4_lifepower decode_victron_can decode_mqtt config_parse set_value
           decode_jbd_ble decode_jk_ble decode_daly_ble)
fi
./seed.sh >/dev/null
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none >/dev/null 2>&1 || { echo "cargo fuzz build failed"; exit 1; }
mkdir -p logs
for t in "${targets[@]}"; do
  extra=()
  [ -n "${RUNS:-}" ] && extra+=(-runs="$RUNS")
  [ "$t" = config_parse ] && extra+=(-max_len=4096)
  cargo fuzz run -s none "$t" corpus/"$t" -- -max_total_time="$seconds" -print_final_stats=1 \
    -timeout=5 -rss_limit_mb=1024 "${extra[@]}" >"logs/$t.log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(ls artifacts/"$t" 2>/dev/null | wc -l)
  echo "$t rc=$rc executions=${execs:-?} seconds=$seconds artifacts=$crashes"
done
