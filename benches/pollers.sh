#!/usr/bin/env bash
# Pollers of unsettled orders (issue 22, SPEC §15.1): 100 orders, each `pending` and completed
# by the upstream on its own 2–10 s after the start, polled once a second by 10 clients each
# through one gateway until every poller has read `completed` (benches/programs/pollers.rs
# starts the upstream stand-in and the gateway itself). Two runs: the unsettled rule on (the
# defaults: unsettled_ttl 5 s, ttl 30 s) and off (cache.unsettled_statuses = [], a time-only
# cache). Targets: the most any poll lags the change ≤ unsettled_ttl + one poll interval, and
# upstream requests per order far below the pollers' requests.
#
#   benches/pollers.sh                        # ~1 min + the build
#   ORDERS=20 CLIENTS=5 benches/pollers.sh    # quicker
#
# Knobs: ORDERS=100, CLIENTS=10, EVERY=1s, SKIP_BUILD=1, GATEWAY_BIN (default
# target/release/partner-gateway). Writes target/bench/pollers-<timestamp>.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORDERS=${ORDERS:-100}
CLIENTS=${CLIENTS:-10}
EVERY=${EVERY:-1s}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/partner-gateway}
PROGRAM=$ROOT/target/release/examples/bench-pollers
OUT_DIR=$ROOT/target/bench
STAMP=$(date +%Y%m%d-%H%M%S)

log() { printf '[pollers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $SKIP_BUILD != 1 ]]; then
  log "building (cargo build --release; --example bench-pollers)"
  (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example bench-pollers) ||
    die "cargo build failed"
fi
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN missing"
[[ -x $PROGRAM ]] || die "$PROGRAM missing (run without SKIP_BUILD=1)"

run() { # RULE
  "$PROGRAM" --gateway-bin "$GATEWAY_BIN" --orders "$ORDERS" --clients "$CLIENTS" --every "$EVERY" --rule "$1"
}
log "$ORDERS orders x $CLIENTS pollers, every $EVERY: unsettled rule on"
ON=$(run on)
log "$ON"
log "the same with the rule off (cache.unsettled_statuses = [])"
OFF=$(run off)
log "$OFF"

kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/pollers-$STAMP.md
{
  echo "# Pollers of unsettled orders ($STAMP)"
  echo
  echo "- gateway: $GATEWAY_BIN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') checked out), cache.ttl 30s, unsettled_ttl default (5s)"
  echo "- machine: $(nproc) cores, $(uname -sr); $ORDERS orders, each completed by the upstream 2–10 s after the start; $CLIENTS pollers per order, one poll every $EVERY"
  echo
  echo "| unsettled rule | polls | upstream GETs | upstream per order | polls per order | most a poll lagged the change | change → first completed read (max) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for line in "$ON" "$OFF"; do
    echo "| $(kv rule "$line") | $(kv polls "$line") | $(kv upstream "$line") | $(kv upstream_per_order "$line") | $(kv polls_per_order "$line") | $(kv stale_max_ms "$line") ms | $(kv seen_max_ms "$line") ms |"
  done
} >"$OUT"
cat "$OUT"
log "written: $OUT"
