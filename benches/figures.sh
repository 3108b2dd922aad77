#!/usr/bin/env bash
# Stampede, memory and soak figures for the gateway (issue 7), on loopback only.
#
#   benches/figures.sh                      # stampede + memory + a 10-minute soak
#   SOAK_SECONDS=60 benches/figures.sh      # shorter soak
#   SKIP_SOAK=1 benches/figures.sh
#
# - stampede: 1,000 concurrent requests (one connection each) for one cold key, against the
#   simulator with 300 ms latency: the upstream must see exactly one request;
# - memory: RSS of the gateway process after filling 100,000 distinct ~1.2 KB orders, per entry;
# - soak: 90 % hits on 1,000 hot keys, 10 % misses over 200,000 keys, cache.max_bytes = 32 MiB;
#   RSS sampled every 10 s must stay flat once the cache is full.
# Every process started here is stopped by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-600}
FILL=${FILL:-100000}
STAMPEDE=${STAMPEDE:-1000}
BIN=target/release/partner-gateway
EX=target/release/examples
OUT=target/bench/figures-$(date -u +%Y%m%dT%H%M%SZ).md
mkdir -p target/bench

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m{print $2}'; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# start_gateway UPSTREAM_URL [KEY=VALUE...] -> sets GW_PID, GW_PORT, ADMIN_PORT
start_gateway() {
  local upstream=$1; shift
  GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
  env PARTNER_GATEWAY__SERVER__LISTEN="127.0.0.1:$GW_PORT" \
      PARTNER_GATEWAY__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
      PARTNER_GATEWAY__UPSTREAM__BASE_URL="$upstream" \
      PARTNER_GATEWAY__LOG__LEVEL=warn \
      "$@" "$BIN" run >/dev/null 2>&1 &
  GW_PID=$!; pids+=("$GW_PID")
  wait_port "$GW_PORT"
}

echo "building (release)…"
cargo build --release --bin partner-gateway --examples -q
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

{
echo "# partner-gateway figures — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
echo
} | tee "$OUT"

# 1. Stampede -------------------------------------------------------------------------------
SIM_PORT=$(free_port)
"$BIN" simulate --listen "127.0.0.1:$SIM_PORT" --latency 300ms >/dev/null 2>&1 &
SIM_PID=$!; pids+=("$SIM_PID"); wait_port "$SIM_PORT"
start_gateway "http://127.0.0.1:$SIM_PORT"
ORDER_PATH=$("$BIN" simulate --help >/dev/null; echo "/v1/customers/4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60/orders/0d0e0000-0000-4000-8000-0000000a11ce")
RESULT=$("$EX/bench-loadgen" stampede --target "http://127.0.0.1:$GW_PORT" --count "$STAMPEDE" --path "$ORDER_PATH")
UPSTREAM=$(metric "$ADMIN_PORT" 'partner_gateway_upstream_requests_total{status="200"}')
WAITS=$(metric "$ADMIN_PORT" partner_gateway_coalesced_waits_total)
stop "$GW_PID"; stop "$SIM_PID"
{
echo "## Stampede"
echo
echo "$STAMPEDE concurrent requests (one connection each) for one cold key, upstream latency 300 ms:"
echo "\`$RESULT\`, upstream requests: **${UPSTREAM:-0}**, coalesced waits: ${WAITS:-0}."
echo
} | tee -a "$OUT"
[ "${UPSTREAM:-0}" = "1" ] || { echo "stampede: expected 1 upstream request, got ${UPSTREAM:-0}" >&2; exit 1; }

# 2. Memory ---------------------------------------------------------------------------------
ORIGIN_PORT=$(free_port)
"$EX/bench-origin" --listen "127.0.0.1:$ORIGIN_PORT" >/dev/null 2>&1 &
ORIGIN_PID=$!; pids+=("$ORIGIN_PID"); wait_port "$ORIGIN_PORT"
start_gateway "http://127.0.0.1:$ORIGIN_PORT" PARTNER_GATEWAY__CACHE__TTL=1h PARTNER_GATEWAY__CACHE__MAX_BYTES=1073741824
"$EX/bench-loadgen" fill --target "http://127.0.0.1:$GW_PORT" --count 200 >/dev/null
BEFORE=$(rss_kb "$GW_PID")
FILLED=$("$EX/bench-loadgen" fill --target "http://127.0.0.1:$GW_PORT" --count "$FILL")
sleep 1
AFTER=$(rss_kb "$GW_PID")
STATS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/cache/stats")
ENTRIES=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["entries"])' "$STATS")
BYTES=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes"])' "$STATS")
stop "$GW_PID"
{
echo "## Memory"
echo
echo "Filled $FILL distinct orders (\`$FILLED\`): $ENTRIES entries, $BYTES weighted bytes."
python3 - "$BEFORE" "$AFTER" "$ENTRIES" "$BYTES" <<'PY'
import sys
before, after, entries, weighted = (int(x) for x in sys.argv[1:])
per = (after - before) * 1024 / max(entries, 1)
print(f"RSS {before/1024:.1f} MiB -> {after/1024:.1f} MiB: **{per:.0f} bytes per entry** "
      f"(weighted size per entry {weighted/max(entries,1):.0f} bytes; target <= 2560).")
PY
echo
} | tee -a "$OUT"

# 3. Soak -----------------------------------------------------------------------------------
if [ "${SKIP_SOAK:-0}" != "1" ]; then
  start_gateway "http://127.0.0.1:$ORIGIN_PORT" PARTNER_GATEWAY__CACHE__TTL=1h PARTNER_GATEWAY__CACHE__MAX_BYTES=33554432
  "$EX/bench-loadgen" fill --target "http://127.0.0.1:$GW_PORT" --count 1000 >/dev/null
  "$EX/bench-loadgen" mixed --target "http://127.0.0.1:$GW_PORT" --seconds "$SOAK_SECONDS" --keys 200000 --hot 1000 >/tmp/pg-soak-$$.txt &
  LOAD_PID=$!; pids+=("$LOAD_PID")
  SAMPLES=()
  for ((t = 10; t <= SOAK_SECONDS; t += 10)); do
    sleep 10
    kill -0 "$GW_PID" 2>/dev/null || { echo "gateway died during the soak" >&2; exit 1; }
    STATS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/cache/stats")
    SAMPLES+=("$t $(rss_kb "$GW_PID") $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes"])' "$STATS")")
  done
  wait "$LOAD_PID" || true
  LOAD=$(cat /tmp/pg-soak-$$.txt); rm -f /tmp/pg-soak-$$.txt
  stop "$GW_PID"
  {
  echo "## Soak"
  echo
  echo "$SOAK_SECONDS s of 90 % hits (1,000 hot keys) / 10 % misses (200,000 keys), cache.max_bytes = 32 MiB: \`$LOAD\`."
  printf '%s\n' "${SAMPLES[@]}" | python3 -c '
import sys
rows = [tuple(int(x) for x in line.split()) for line in sys.stdin if line.strip()]
full = [r for r in rows if r[2] >= 0.9 * 33554432]
print("| t (s) | RSS (MiB) | cache bytes (MiB) |")
print("| ---: | ---: | ---: |")
for t, rss, b in rows:
    print(f"| {t} | {rss/1024:.1f} | {b/1048576:.1f} |")
if len(full) >= 2:
    first, last = full[0][1], full[-1][1]
    peak = max(r[1] for r in full)
    growth = (last - first) / first * 100
    print()
    print(f"Once full (t={full[0][0]} s): RSS {first/1024:.1f} MiB -> {last/1024:.1f} MiB at the end "
          f"({growth:+.1f} %), peak {peak/1024:.1f} MiB.")
else:
    print()
    print("The cache did not fill during the soak; run longer.")
'
  echo
  } | tee -a "$OUT"
fi
stop "$ORIGIN_PID"
echo "written to $OUT"
