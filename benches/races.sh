#!/usr/bin/env bash
# Write-then-read races (issue 21): how often a read sent after a write's answer gets the older
# version, against an upstream that reads an order when a request arrives and answers 50–200 ms
# later (benches/programs/races.rs starts it, and the gateways, itself). One replica, then three
# replicas in fleet mode on a local redis-server (started here on a free loopback port and
# stopped by its PID). Target: 0 stale reads.
#
#   benches/races.sh                                      # 10,000 races each (~1 min + the build)
#   COUNT=2000 benches/races.sh                           # quicker
#   GATEWAY_BIN=/tmp/partner-gateway-old benches/races.sh # the same races against another build
#
# Knobs: COUNT=10000 races per run, CONCURRENCY=64 races at once, SKIP_BUILD=1 (use
# target/release as it is), GATEWAY_BIN (default target/release/partner-gateway).
# Writes target/bench/races-<timestamp>.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=${COUNT:-10000}
CONCURRENCY=${CONCURRENCY:-64}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/partner-gateway}
PROGRAM=$ROOT/target/release/examples/bench-races
OUT_DIR=$ROOT/target/bench
STAMP=$(date +%Y%m%d-%H%M%S)
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[races %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $SKIP_BUILD != 1 ]]; then
  log "building (cargo build --release; --example bench-races)"
  (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example bench-races) ||
    die "cargo build failed"
fi
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN missing"
[[ -x $PROGRAM ]] || die "$PROGRAM missing (run without SKIP_BUILD=1)"
command -v redis-server >/dev/null || die "redis-server is needed for the fleet run (apt-get install -y redis-server)"

REDIS_PID=""
cleanup() { [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null || true; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG || die "redis-server did not start"

run() { # REPLICAS [REDIS_URL]
  "$PROGRAM" --gateway-bin "$GATEWAY_BIN" --replicas "$1" --redis "${2:-}" \
    --count "$COUNT" --concurrency "$CONCURRENCY"
}
log "$COUNT races, one replica"
ONE=$(run 1)
log "$ONE"
log "$COUNT races, three replicas (fleet mode, redis-server on 127.0.0.1:$PORT)"
THREE=$(run 3 "redis://127.0.0.1:$PORT")
log "$THREE"

kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/races-$STAMP.md
{
  echo "# Write-then-read races ($STAMP)"
  echo
  echo "- gateway: $GATEWAY_BIN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') checked out)"
  echo "- machine: $(nproc) cores, $(uname -sr); upstream reads on arrival, answers GETs in 50–200 ms"
  echo "- each race: GET through replica i (fill in flight), PATCH through i+1 once the upstream has the GET, then, after the PATCH's 200, GET through i (even races: the replica whose fill is in flight) or i+2 (odd races)"
  echo
  echo "| replicas | races | stale reads after the write's answer | failed | fills that outlived the write | seconds |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  for line in "$ONE" "$THREE"; do
    echo "| $(kv replicas "$line") | $(kv races "$line") | **$(kv stale "$line")** | $(kv failed "$line") | $(kv fill_outlived_write "$line") | $(kv seconds "$line") |"
  done
} >"$OUT"
cat "$OUT"
log "written: $OUT"
