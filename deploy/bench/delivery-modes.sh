#!/usr/bin/env bash
# Throughput of spool mode against kafka mode, same machine, same broker, same load, in one
# run: ROUNDS alternating pairs of `wrk` runs against the release binary, then the median
# events/s and p99 of each mode and their ratio. Not run by CI.
#
#   deploy/kafka/local-kafka.sh start        # or any broker: KAFKA_BOOTSTRAP_SERVERS=host:port
#   deploy/bench/delivery-modes.sh           # ROUNDS=3 DURATION=15s CONNECTIONS=64
#
# Needs wrk (Debian: apt-get install wrk) and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${ROUNDS:-3}
duration=${DURATION:-15s}
connections=${CONNECTIONS:-64}
bootstrap=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-9092}}
work=$(mktemp -d -t telecmi-bridge-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet

run_mode() {
  local mode=$1 round=$2
  rm -rf "$work/spool"
  TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS="$bootstrap" \
  TELECMI_BRIDGE_DELIVERY__MODE="$mode" \
  TELECMI_BRIDGE_SPOOL__PATH="$work/spool/spool.redb" \
  TELECMI_BRIDGE_LOGGING__LEVEL=warn \
  TELECMI_BRIDGE_SERVER__LISTEN=127.0.0.1:18080 \
  TELECMI_BRIDGE_SERVER__ADMIN_LISTEN=127.0.0.1:19090 \
    ./target/release/telecmi-bridge >"$work/bridge-$mode-$round.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:19090/readyz >/dev/null && break
    sleep 0.2
  done
  wrk -t2 -c"$connections" -d"$duration" --latency -s deploy/bench/webhook.lua \
    http://127.0.0.1:18080/webhooks/telecmi >"$work/wrk-$mode-$round.txt"
  kill -TERM "$pid"
  wait "$pid" || true
  if grep -q "Non-2xx" "$work/wrk-$mode-$round.txt"; then
    echo "$mode round $round: non-2xx answers:" >&2
    grep "Non-2xx" "$work/wrk-$mode-$round.txt" >&2
  fi
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk-$mode-$round.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk-$mode-$round.txt")
  echo "$mode $round $rps $p99" | tee -a "$work/results"
}

for round in $(seq "$rounds"); do
  run_mode kafka "$round"
  run_mode spool "$round"
done

python3 - "$work/results" "$connections" "$duration" <<'PY'
import statistics, sys

def to_ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)

rows = [line.split() for line in open(sys.argv[1])]
results = {}
for mode in ("kafka", "spool"):
    mine = [row for row in rows if row[0] == mode]
    results[mode] = (
        statistics.median(float(row[2]) for row in mine),
        statistics.median(to_ms(row[3]) for row in mine),
    )
print(f"\n{len(rows) // 2} rounds of {sys.argv[3]}, {sys.argv[2]} connections (medians)")
print("| mode | events/s | p99 ms |")
print("|---|---|---|")
for mode, (rps, p99) in results.items():
    print(f"| {mode} | {rps:,.0f} | {p99:.1f} |")
print(f"spool / kafka events/s: {results['spool'][0] / results['kafka'][0]:.2f}")
PY
