#!/usr/bin/env bash
# Adversarial load figure (hardening issue, SPEC §14), on loopback only: a well-behaved client's
# cache-hit p99 and cache-miss success rate on an unloaded gateway (phase A), on the same gateway
# while attackers run (phase B) and once more after they stopped (phase C, the run's noise).
# Goal: hit p99 in B within 2x A's, 0 failed well-behaved requests in B.
#
#   benches/adversarial.sh                        # ~2 min of measuring + the build
#   DURATION=10 RAMP=3 benches/adversarial.sh     # a quick look
#   GATEWAY_BIN=/path/to/partner-gateway benches/adversarial.sh   # any gateway build
#
# What it does: builds the gateway and the bench programs (release); starts the bench origin
# (benches/programs/origin.rs: orders, and `GET /__stall`, a body that stops after 16 bytes) and
# the gateway on free 127.0.0.1 ports, with small limits so that the attacks bite:
# upstream.max_in_flight=8, header_read_timeout / body_read_timeout / body_idle_timeout 2s,
# server.max_connections 1024 (keys this gateway build does not know are left out and named in
# the report); then bench-adversary (benches/programs/adversary.rs) checks the routes, warms the
# hit keys and runs the phases. Attackers in phase B: slowloris heads, idle h2c connections,
# trickled and stalled request bodies (POST, Content-Length 100000, to a forwarded path), and
# requests for the stalled upstream body. Prints a Markdown report, also written to
# target/bench/adversarial-<timestamp>.md. Every process started here is stopped by PID on exit.
#
# CPU placement: the gateway on SERVER_CPU; the origin, the client and the attackers on
# CLIENT_CPU (taskset, when present).
#
# Knobs (environment):
#   DURATION=30       seconds of measurement per phase     RAMP=5   attackers' head start (s)
#   AFTER=1           run phase C (0: only A and B)
#   HIT_CONNS=16 HIT_RATE=4000     hit connections and hits/s in all (0: back to back)
#   MISS_CONNS=4 MISS_RATE=100     miss connections and misses/s in all
#   KEYS=1000                      warmed orders the hits cycle through
#   TIMEOUT=10                     seconds before a well-behaved request counts as failed
#   SLOWLORIS=200 H2_IDLE=200 TRICKLE=16 STALL=16      attackers of each kind (0: none);
#                                  half the TRICKLE ones drip a byte every TRICKLE_MS, half stall
#   SLOWLORIS_MS=1000 TRICKLE_MS=1000 RECONNECT_MS=200
#   MAX_IN_FLIGHT=8 HEADER_READ_TIMEOUT=2s BODY_READ_TIMEOUT=2s BODY_IDLE_TIMEOUT=2s
#   MAX_CONNECTIONS=1024           the gateway's limits under test
#   SERVER_CPU=0 CLIENT_CPU=1
#   GATEWAY_BIN=target/release/partner-gateway   (set: that binary is used and not built)
#   SKIP_BUILD=1      use the binaries already built      KEEP_TMP=1  keep logs and say where
#   STRICT=1          exit 2 when the goal is not met (default: exit 0 with the verdict printed)
# PARTNER_GATEWAY__* variables in the environment reach the gateway, except the keys set here.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-30}
RAMP=${RAMP:-5}
AFTER=${AFTER:-1}
HIT_CONNS=${HIT_CONNS:-16}
HIT_RATE=${HIT_RATE:-4000}
MISS_CONNS=${MISS_CONNS:-4}
MISS_RATE=${MISS_RATE:-100}
KEYS=${KEYS:-1000}
TIMEOUT=${TIMEOUT:-10}
SLOWLORIS=${SLOWLORIS:-200}
H2_IDLE=${H2_IDLE:-200}
TRICKLE=${TRICKLE:-16}
STALL=${STALL:-16}
SLOWLORIS_MS=${SLOWLORIS_MS:-1000}
TRICKLE_MS=${TRICKLE_MS:-1000}
RECONNECT_MS=${RECONNECT_MS:-200}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-8}
HEADER_READ_TIMEOUT=${HEADER_READ_TIMEOUT:-2s}
BODY_READ_TIMEOUT=${BODY_READ_TIMEOUT:-2s}
BODY_IDLE_TIMEOUT=${BODY_IDLE_TIMEOUT:-2s}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-1024}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
STRICT=${STRICT:-0}

log() { printf '[adversarial %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

for knob in DURATION RAMP AFTER HIT_CONNS HIT_RATE MISS_CONNS MISS_RATE KEYS TIMEOUT SLOWLORIS \
  H2_IDLE TRICKLE STALL SLOWLORIS_MS TRICKLE_MS RECONNECT_MS MAX_IN_FLIGHT MAX_CONNECTIONS \
  SERVER_CPU CLIENT_CPU; do
  [[ ${!knob} =~ ^[0-9]+$ ]] || die "$knob must be a whole number (got '${!knob}')"
done
((DURATION >= 1 && HIT_CONNS >= 1 && MISS_CONNS >= 1 && MISS_RATE >= 1 && KEYS >= 1 && TIMEOUT >= 1)) ||
  die "DURATION, HIT_CONNS, MISS_CONNS, MISS_RATE, KEYS and TIMEOUT must be at least 1"
for knob in HEADER_READ_TIMEOUT BODY_READ_TIMEOUT BODY_IDLE_TIMEOUT; do
  [[ ${!knob} =~ ^[0-9]+(ms|s|m)$ ]] || die "$knob must look like 500ms, 2s, 1m (got '${!knob}')"
done
for tool in python3 curl; do command -v "$tool" >/dev/null || die "$tool not found"; done

START_SECONDS=$SECONDS
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$ROOT/target/bench
OUT_MD=$OUT_DIR/adversarial-$STAMP.md
mkdir -p "$OUT_DIR"

# --- processes: every one started here is recorded and ended by PID on exit --------------------

STARTED=()
TMP=""

alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

cleanup() {
  local rc=$? pid i any
  trap - EXIT INT TERM
  for pid in "${STARTED[@]+"${STARTED[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    any=0
    for pid in "${STARTED[@]+"${STARTED[@]}"}"; do alive "$pid" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  for pid in "${STARTED[@]+"${STARTED[@]}"}"; do
    if alive "$pid"; then
      log "PID $pid did not stop on SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [[ -n $TMP ]]; then
    if [[ $KEEP_TMP == 1 || ($rc -ne 0 && $rc -ne 2) ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() { # PID PORT LOGFILE
  local i
  for ((i = 0; i < 600; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    alive "$1" || die "PID $1 exited during start-up; its log: $(tail -n 20 "$3")"
    sleep 0.05
  done
  die "nothing listens on 127.0.0.1:$2 after 30 s; log: $(tail -n 20 "$3")"
}

ON_SERVER=()
ON_CLIENT=()
CPU_ARGS=()
if command -v taskset >/dev/null; then
  NCPU=$(getconf _NPROCESSORS_ONLN)
  ((SERVER_CPU < NCPU && CLIENT_CPU < NCPU)) || die "needs CPUs $SERVER_CPU and $CLIENT_CPU; this machine has $NCPU"
  ON_SERVER=(taskset -c "$SERVER_CPU")
  ON_CLIENT=(taskset -c "$CLIENT_CPU")
  CPU_ARGS=(--server-cpu "$SERVER_CPU" --client-cpu "$CLIENT_CPU")
  PLACEMENT="gateway on CPU $SERVER_CPU; origin, client and attackers on CPU $CLIENT_CPU (taskset)"
else
  log "warning: no taskset; processes are not pinned"
  PLACEMENT="not pinned (no taskset)"
fi

# --- build -------------------------------------------------------------------------------------

if [[ -n ${GATEWAY_BIN:-} ]]; then
  BUILD_GATEWAY=0
else
  GATEWAY_BIN=$ROOT/target/release/partner-gateway
  BUILD_GATEWAY=1
fi
EXAMPLES=$ROOT/target/release/examples
if [[ $SKIP_BUILD != 1 ]]; then
  log "building (release)"
  if ((BUILD_GATEWAY)); then
    (cd "$ROOT" && cargo build --release --quiet --bin partner-gateway) || die "cargo build failed"
  fi
  (cd "$ROOT" && cargo build --release --quiet --example bench-origin --example bench-adversary) ||
    die "cargo build of the bench programs failed"
fi
for bin in "$GATEWAY_BIN" "$EXAMPLES/bench-origin" "$EXAMPLES/bench-adversary"; do
  [[ -x $bin ]] || die "$bin missing (run without SKIP_BUILD=1)"
done

# --- start -------------------------------------------------------------------------------------

TMP=$(mktemp -d /tmp/pgw-adversarial.XXXXXX)
# Hundreds of attacker connections on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
read -r P_ORIGIN P_GATEWAY P_ADMIN < <(python3 "$ROOT/benches/lib/compare_helper.py" ports 3)

"${ON_CLIENT[@]}" "$EXAMPLES/bench-origin" --listen "127.0.0.1:$P_ORIGIN" >"$TMP/origin.log" 2>&1 </dev/null &
ORIGIN_PID=$!
STARTED+=("$ORIGIN_PID")
wait_port "$ORIGIN_PID" "$P_ORIGIN" "$TMP/origin.log"

# The gateway's settings; limits this build does not know are dropped (and reported).
declare -A LIMITS=(
  [PARTNER_GATEWAY__UPSTREAM__MAX_IN_FLIGHT]=$MAX_IN_FLIGHT
  [PARTNER_GATEWAY__SERVER__HEADER_READ_TIMEOUT]=$HEADER_READ_TIMEOUT
  [PARTNER_GATEWAY__SERVER__BODY_READ_TIMEOUT]=$BODY_READ_TIMEOUT
  [PARTNER_GATEWAY__UPSTREAM__BODY_IDLE_TIMEOUT]=$BODY_IDLE_TIMEOUT
  [PARTNER_GATEWAY__SERVER__MAX_CONNECTIONS]=$MAX_CONNECTIONS
)
GATEWAY_ENV=(
  PARTNER_GATEWAY__SERVER__LISTEN="127.0.0.1:$P_GATEWAY"
  PARTNER_GATEWAY__ADMIN__LISTEN="127.0.0.1:$P_ADMIN"
  PARTNER_GATEWAY__UPSTREAM__BASE_URL="http://127.0.0.1:$P_ORIGIN"
  PARTNER_GATEWAY__CACHE__TTL=1h
  PARTNER_GATEWAY__LOG__LEVEL=warn
)
key_of() { # PARTNER_GATEWAY__SERVER__MAX_CONNECTIONS -> server.max_connections
  local rest=${1#PARTNER_GATEWAY__}
  rest=${rest/__/.}
  printf '%s' "${rest,,}"
}
UNSUPPORTED=()
for ((attempt = 0; attempt <= ${#LIMITS[@]}; attempt++)); do
  settings=("${GATEWAY_ENV[@]}")
  for var in "${!LIMITS[@]}"; do settings+=("$var=${LIMITS[$var]}"); done
  if env -u RUST_LOG "${settings[@]}" "$GATEWAY_BIN" check-config >"$TMP/check-config.out" 2>&1; then
    break
  fi
  dropped=""
  for var in "${!LIMITS[@]}"; do
    if grep -qF "$(key_of "$var")" "$TMP/check-config.out"; then dropped=$var; fi
  done
  [[ -n $dropped ]] || die "the gateway refuses its configuration: $(cat "$TMP/check-config.out")"
  log "this gateway build does not take $(key_of "$dropped"); running without it"
  UNSUPPORTED+=("$(key_of "$dropped")")
  unset "LIMITS[$dropped]"
done
SETTINGS_TEXT=""
for var in $(printf '%s\n' "${!LIMITS[@]}" | sort); do
  SETTINGS_TEXT+="\`$(key_of "$var") = ${LIMITS[$var]}\`, "
done
SETTINGS_TEXT+="\`cache.ttl = 1h\`, \`log.level = warn\`, the rest default"

env -u RUST_LOG -C "$TMP" "${settings[@]}" "${ON_SERVER[@]}" "$GATEWAY_BIN" run \
  >"$TMP/gateway.log" 2>&1 </dev/null &
GATEWAY_PID=$!
STARTED+=("$GATEWAY_PID")
wait_port "$GATEWAY_PID" "$P_GATEWAY" "$TMP/gateway.log"
wait_port "$GATEWAY_PID" "$P_ADMIN" "$TMP/gateway.log"
curl -sf --max-time 5 "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null || die "the gateway's /readyz is not 200"
log "origin 127.0.0.1:$P_ORIGIN (pid $ORIGIN_PID), gateway 127.0.0.1:$P_GATEWAY (pid $GATEWAY_PID)"

# --- measure -----------------------------------------------------------------------------------

PHASES=2
((AFTER)) && PHASES=3
# Bounded: the phases, the ramp, the preflight and the warm-up, plus a minute of margin.
LIMIT=$((PHASES * (DURATION + TIMEOUT + 2) + RAMP + 120))
log "measuring: $PHASES phases x ${DURATION}s (attackers ${RAMP}s ahead of phase B); at most ${LIMIT}s"
timeout -k 10 "$LIMIT" "${ON_CLIENT[@]}" "$EXAMPLES/bench-adversary" run \
  --target "127.0.0.1:$P_GATEWAY" --gateway-pid "$GATEWAY_PID" --clk-tck "$(getconf CLK_TCK)" \
  --seconds "$DURATION" --ramp "$RAMP" --after "$AFTER" \
  --hit-conns "$HIT_CONNS" --hit-rate "$HIT_RATE" --miss-conns "$MISS_CONNS" \
  --miss-rate "$MISS_RATE" --keys "$KEYS" --timeout "$TIMEOUT" \
  --slowloris "$SLOWLORIS" --h2-idle "$H2_IDLE" --trickle "$TRICKLE" --stall "$STALL" \
  --slowloris-ms "$SLOWLORIS_MS" --trickle-ms "$TRICKLE_MS" --reconnect-ms "$RECONNECT_MS" \
  "${CPU_ARGS[@]+"${CPU_ARGS[@]}"}" \
  >"$TMP/report.md" 2>"$TMP/adversary.log" </dev/null &
ADVERSARY_PID=$!
STARTED+=("$ADVERSARY_PID")
set +e
wait "$ADVERSARY_PID"
adversary_rc=$?
set -e
((adversary_rc == 0 || adversary_rc == 2)) ||
  die "bench-adversary failed (exit $adversary_rc): $(tail -n 20 "$TMP/adversary.log")"
alive "$GATEWAY_PID" || die "the gateway died during the run; its log: $(tail -n 20 "$TMP/gateway.log")"

# --- report ------------------------------------------------------------------------------------

ELAPSED=$((SECONDS - START_SECONDS))
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')
DIRTY=$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)')
{
  echo "# partner-gateway adversarial figure ($STAMP)"
  echo
  echo "- date: $(date -R)"
  echo "- machine: ${CPU_MODEL:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores online, $(uname -sr); $PLACEMENT"
  echo "- gateway: \`$GATEWAY_BIN\`$( ((BUILD_GATEWAY)) && echo " (release build of commit $COMMIT$DIRTY)" || echo "; harness from commit $COMMIT")"
  echo "- gateway settings: $SETTINGS_TEXT"
  if ((${#UNSUPPORTED[@]})); then
    echo "- **not supported by this gateway build, left out:** ${UNSUPPORTED[*]}"
  fi
  echo "- wall time (build, start, checks, phases): $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
  echo
  cat "$TMP/report.md"
} >"$OUT_MD"
cat "$OUT_MD"
log "written: $OUT_MD"
if ((adversary_rc == 2 && STRICT == 1)); then exit 2; fi
exit 0
