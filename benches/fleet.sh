#!/usr/bin/env bash
# Fleet mode figures (SPEC §12), on loopback only: several replicas of the gateway sharing one
# redis-server, each figure checked against its target.
#
#   benches/fleet.sh                                   # all parts: ~5 min of measuring + build
#   ROUNDS=2 DURATION=3 DURATION_E=15 benches/fleet.sh # a quick look (~1.5 min)
#   PARTS="a d" SKIP_BUILD=1 benches/fleet.sh          # some parts, binaries already built
#
# Parts (each starts its own redis-server, upstream and gateways, and stops them at its end):
#  (a) L1 hits, fleet mode on vs off: two gateways on the same origin, one with fleet mode
#      (its own Redis), one without; wrk on one warmed order, ROUNDS pairs of DURATION s, the
#      order flipped each round; ratio on/off per pair and the median (target >= 0.97). The
#      Redis commands counted during the "on" runs show what the L1 hit path asks of Redis.
#  (b) L2 hits: replicas A and B; 2 x KEYS_B distinct orders filled through A. The first
#      KEYS_B read through B one at a time, each twice in a row (an L2 hit, then an L1 hit, at
#      the same moments of a noisy machine): added p99 of an L2 hit over an L1 hit (target
#      <= 1 ms). The other KEYS_B read through B in two separate passes (all L2 hits, then all
#      L1 hits): CPU per request of B's process (utime + stime from /proc) and of redis-server.
#  (c) stampede: three replicas in front of the simulator with 300 ms latency; STAMPEDE
#      concurrent requests (one connection each, round-robin over the replicas) for one cold
#      order; upstream requests summed over the replicas' metrics (target 1).
#  (d) write -> every replica confirmed: three replicas in front of the simulator; RACES times:
#      the order is read through A, B and C (twice on B and C, so that it is in their memory),
#      PATCHed through A (latency measured, target p99 <= 50 ms), then read through B and C at
#      once; a read that returns the etag from before the write is stale (target 0). The same
#      write through a gateway without fleet mode is the reference.
#  (e) fleet budget: three replicas with upstream.rate_limit_rps = RPS_E (the fleet's whole
#      budget, burst BURST_E) in front of the simulator with --budget-per-minute BUDGET_E; an
#      open-loop client offers OFFER_FACTOR x the budget for DURATION_E s, distinct keys (the
#      simulator answers 404, nothing is cached: every admitted request goes upstream).
#      Upstream rate within the budget, 0 to -5 % (target), 0 upstream 429s (target). RPS_E
#      defaults to the largest whole rate with 60 x RPS_E + BURST_E <= 99 % of BUDGET_E (the
#      simulator's window is fixed, from its first request, so the burst lands in it); BURST_E
#      is at least 2 so that under overload GCRA admits exactly RPS_E (with 1, every admission
#      loses the gap to the next arrival). The ratio is pro-rated for DURATION_E < 60, where
#      the burst weighs more.
#  (f) Redis down: three replicas on the bench origin, HOT_F orders warmed on each; a paced mix
#      (RATE_F req/s, 90 % hits on the warmed orders, 10 % new keys) for DURATION_F s; the
#      redis-server is SIGKILLed by PID halfway. 5xx and unanswered requests (target 0) and the
#      hit p99 while Redis is down vs before (target: at most fleet.timeout more, §12.5).
#
# Prints a Markdown report, also written to target/bench/fleet-<timestamp>.md. Every process
# the script starts (gateways, redis-server, simulator, origin, wrk, clients) is stopped by PID
# at exit. CPU placement: gateways on SERVER_CPU; wrk, clients, origin, simulator and
# redis-server on CLIENT_CPU (taskset). Every request carries `Authorization: Bearer bench`.
#
# Knobs (environment):
#   PARTS="a b c d e f"   parts to run (always in this order)
#   ROUNDS=6 DURATION=5   (a): pairs of wrk runs, seconds per run; CONNECTIONS=64 wrk connections
#   KEYS_B=20000          (b): distinct orders
#   STAMPEDE=1000 LATENCY_C=300ms                   (c)
#   RACES=1000                                      (d)
#   BUDGET_E=612 BURST_E=5 RPS_E=(fits the budget) OFFER_FACTOR=5 DURATION_E=60 LATENCY_E=50ms (e)
#   DURATION_F=20 RATE_F=2000 HOT_F=1000            (f)
#   SERVER_CPU=0 CLIENT_CPU=1
#   SKIP_BUILD=1   use the binaries already in target/release
#   KEEP_TMP=1     keep the temp dir (logs, wrk outputs) and say where it is
#   STRICT=1       exit 2 when a target is not met (default: exit 0 with the verdicts printed)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

PARTS=${PARTS:-a b c d e f}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
KEYS_B=${KEYS_B:-20000}
STAMPEDE=${STAMPEDE:-1000}
LATENCY_C=${LATENCY_C:-300ms}
RACES=${RACES:-1000}
BUDGET_E=${BUDGET_E:-612}
BURST_E=${BURST_E:-5}
# The fleet's budget (whole requests per second) set under the simulator's: burst + 60 x rps
# at most 99 % of the budget per minute.
RPS_E=${RPS_E:-$(((BUDGET_E * 99 / 100 - BURST_E) / 60))}
OFFER_FACTOR=${OFFER_FACTOR:-5}
DURATION_E=${DURATION_E:-60}
LATENCY_E=${LATENCY_E:-50ms}
DURATION_F=${DURATION_F:-20}
RATE_F=${RATE_F:-2000}
HOT_F=${HOT_F:-1000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
STRICT=${STRICT:-0}

SECRET=bench-fleet-partition-secret-0123456789abcdef
AUTH_HEADER='Authorization: Bearer bench'
FLEET_TIMEOUT_MS=50

log() { printf '[fleet %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

for knob in ROUNDS DURATION CONNECTIONS KEYS_B STAMPEDE RACES BUDGET_E BURST_E RPS_E \
  OFFER_FACTOR DURATION_E DURATION_F RATE_F HOT_F SERVER_CPU CLIENT_CPU; do
  [[ ${!knob} =~ ^[0-9]+$ ]] || die "$knob must be a whole number (got '${!knob}')"
done
((ROUNDS >= 1 && DURATION >= 1 && KEYS_B >= 100 && STAMPEDE >= 1 && RACES >= 1 &&
  RPS_E >= 1 && BURST_E >= 1 && DURATION_E >= 1 && DURATION_F >= 2 && RATE_F >= 1 && HOT_F >= 1)) ||
  die "a knob is out of range (KEYS_B >= 100, DURATION_F >= 2, RPS_E >= 1, the rest >= 1)"
for part in $PARTS; do
  [[ $part =~ ^[a-f]$ ]] || die "PARTS: unknown part '$part' (a b c d e f)"
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$ROOT/target/bench
OUT_MD=$OUT_DIR/fleet-$STAMP.md
mkdir -p "$OUT_DIR"
TMP=$(mktemp -d /tmp/bench-fleet.XXXXXX)

# --- processes: every one started here is recorded and ended by PID -----------------------

STARTED=()
declare -A PID=() LOGF=() PORT=() ADMIN=()

alive() {
  local line
  line=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  line=${line##*) }
  [[ ${line%% *} != Z ]]
}

forget() { # PID: no longer ours to stop (it ended; its number may be reused)
  local kept=() p
  for p in "${STARTED[@]+"${STARTED[@]}"}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  STARTED=("${kept[@]+"${kept[@]}"}")
}

stop_pid() { # PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1 i
  forget "$pid"
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "PID $pid did not stop on SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${STARTED[@]+"${STARTED[@]}"}"; do stop_pid "$pid"; done
  if [[ $KEEP_TMP == 1 || $rc -ne 0 && $rc -ne 2 ]]; then
    log "temp dir kept: $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

spawn() { # NAME COMMAND... : start in the background (stdout+stderr to a log), record the PID
  local name=$1
  shift
  LOGF[$name]=$TMP/$name.log
  "$@" >"${LOGF[$name]}" 2>&1 </dev/null &
  PID[$name]=$!
  STARTED+=("$!")
}

stop_all() { # stops every process of the part that ends
  local name
  for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
  PID=()
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # NAME PORT
  local name=$1 port=$2 i
  for ((i = 0; i < 600; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    alive "${PID[$name]}" || die "$name exited during start-up: $(tail -n 20 "${LOGF[$name]}")"
    sleep 0.05
  done
  die "$name did not listen on 127.0.0.1:$port within 30 s: $(tail -n 20 "${LOGF[$name]}")"
}

# --- tools and build ------------------------------------------------------------------------

if ! command -v redis-server >/dev/null; then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  command -v apt-get >/dev/null || die "redis-server is missing (Debian: apt-get install -y redis-server)"
  log "installing redis-server with apt"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]+"${sudo[@]}"}" apt-get install -y redis-server ||
    die "redis-server is missing and could not be installed (apt-get install -y redis-server)"
fi
for tool in redis-server wrk curl taskset python3 cargo getconf; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
NCPU=$(getconf _NPROCESSORS_ONLN)
((SERVER_CPU < NCPU && CLIENT_CPU < NCPU)) || die "needs CPUs $SERVER_CPU and $CLIENT_CPU; this machine has $NCPU"
CLK_TCK=$(getconf CLK_TCK)
ON_SERVER=(taskset -c "$SERVER_CPU")
ON_CLIENT=(taskset -c "$CLIENT_CPU")
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ $SKIP_BUILD != 1 ]]; then
  log "building (cargo build --release --bin partner-gateway --example bench-origin --example bench-fleet)"
  (cd "$ROOT" && cargo build --release --quiet --bin partner-gateway --example bench-origin \
    --example bench-fleet) || die "cargo build failed"
fi
GATEWAY_BIN=$ROOT/target/release/partner-gateway
ORIGIN_BIN=$ROOT/target/release/examples/bench-origin
LOAD_BIN=$ROOT/target/release/examples/bench-fleet
for bin in "$GATEWAY_BIN" "$ORIGIN_BIN" "$LOAD_BIN"; do
  [[ -x $bin ]] || die "$bin missing (run without SKIP_BUILD=1)"
done
LOAD=("${ON_CLIENT[@]}" "$LOAD_BIN")

run() { # OUT COMMAND... : in the background with its PID recorded (so that the exit trap stops
  # it), waited for; stdout and stderr to OUT
  local out=$1 pid rc=0
  shift
  "$@" >"$out" 2>&1 </dev/null &
  pid=$!
  STARTED+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  return "$rc"
}

load() { # ARGS... : bench-fleet ARGS through run(); its line in LOAD_OUT
  run "$TMP/load.out" "${LOAD[@]}" "$@" || die "bench-fleet $1 failed: $(tail -n 5 "$TMP/load.out")"
  LOAD_OUT=$(tail -n 1 "$TMP/load.out")
}

# --- helpers ----------------------------------------------------------------------------------

start_redis() { # -> REDIS_PORT, PID[redis]
  REDIS_PORT=$(free_port)
  spawn redis "${ON_CLIENT[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --protected-mode yes --daemonize no
  wait_port redis "$REDIS_PORT"
}

redis_cmd() { # COMMAND... : one command through a raw socket (no redis-cli needed)
  python3 - "$REDIS_PORT" "$@" <<'PY'
import socket, sys
port, args = int(sys.argv[1]), sys.argv[2:]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
data = b""
while True:
    chunk = s.recv(65536)
    data += chunk
    if not chunk or (data.startswith(b"$") and len(data) >= int(data[1:data.index(b"\r\n")]) + data.index(b"\r\n") + 4) \
            or (not data.startswith(b"$") and data.endswith(b"\r\n")):
        break
print(data.decode(errors="replace"))
PY
}

redis_commands() { # total commands processed by the redis-server so far
  redis_cmd INFO stats | awk -F: '/^total_commands_processed/{gsub(/\r/, "", $2); print $2}'
}

start_origin() { # -> UPSTREAM
  local port
  port=$(free_port)
  spawn origin "${ON_CLIENT[@]}" "$ORIGIN_BIN" --listen "127.0.0.1:$port"
  wait_port origin "$port"
  UPSTREAM=http://127.0.0.1:$port
}

start_simulator() { # ARGS... -> UPSTREAM, SIM_PATHS (the catalog's order paths)
  local port i
  port=$(free_port)
  spawn simulator "${ON_CLIENT[@]}" "$GATEWAY_BIN" simulate --listen "127.0.0.1:$port" "$@"
  wait_port simulator "$port"
  for ((i = 0; i < 100; i++)); do
    grep -q '/v1/customers/' "${LOGF[simulator]}" && break
    sleep 0.05
  done
  mapfile -t SIM_PATHS < <(grep -o '/v1/customers/[^ ]*/orders/[^ ]*' "${LOGF[simulator]}")
  ((${#SIM_PATHS[@]} >= 2)) || die "the simulator listed no orders: $(head -n 5 "${LOGF[simulator]}")"
  UPSTREAM=http://127.0.0.1:$port
}

# start_gateway NAME FLEET(on|off) [KEY=VALUE...]: on SERVER_CPU, upstream $UPSTREAM; with
# fleet on, Redis $REDIS_PORT and fleet name $FLEET_NAME. -> PORT[NAME], ADMIN[NAME]
start_gateway() {
  local name=$1 fleet=$2 vars
  shift 2
  PORT[$name]=$(free_port)
  ADMIN[$name]=$(free_port)
  vars=(
    PARTNER_GATEWAY__SERVER__LISTEN="127.0.0.1:${PORT[$name]}"
    PARTNER_GATEWAY__ADMIN__LISTEN="127.0.0.1:${ADMIN[$name]}"
    PARTNER_GATEWAY__UPSTREAM__BASE_URL="$UPSTREAM"
    PARTNER_GATEWAY__LOG__LEVEL=warn
    PARTNER_GATEWAY__CACHE__TTL=1h
    PARTNER_GATEWAY__CACHE__MAX_BYTES=1073741824
  )
  if [[ $fleet == on ]]; then
    vars+=(
      PARTNER_GATEWAY__FLEET__REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
      PARTNER_GATEWAY__FLEET__NAME="$FLEET_NAME"
      PARTNER_GATEWAY__FLEET__PARTITION_SECRET="$SECRET"
    )
  fi
  spawn "$name" env "${vars[@]}" "$@" "${ON_SERVER[@]}" "$GATEWAY_BIN" run
  wait_port "$name" "${PORT[$name]}"
}

fleet_view() { # NAME -> "up replicas"
  curl -sf "http://127.0.0.1:${ADMIN[$1]}/cache/stats" |
    python3 -c 'import json,sys; f=json.load(sys.stdin).get("fleet") or {}; print(f.get("up"), f.get("replicas"))'
}

wait_fleet() { # COUNT NAME... : until every one says up with COUNT replicas (15 s)
  local count=$1 name i
  shift
  for name in "$@"; do
    for ((i = 0; i < 150; i++)); do
      [[ $(fleet_view "$name" 2>/dev/null || true) == "True $count" ]] && continue 2
      sleep 0.1
    done
    die "$name: fleet not up with $count replicas within 15 s (says: $(fleet_view "$name" || true))"
  done
}

metric() { # NAME METRIC_PREFIX : sum of the samples whose name+labels start with the prefix
  curl -sf "http://127.0.0.1:${ADMIN[$1]}/metrics" |
    awk -v m="$2" 'index($1, m) == 1 {s += $2} END {printf "%.0f\n", s}'
}

metric_sum() { # METRIC_PREFIX NAME... : summed over gateways
  local prefix=$1 name total=0
  shift
  for name in "$@"; do total=$((total + $(metric "$name" "$prefix"))); done
  echo "$total"
}

cpu_ticks() { # PID -> utime + stime (clock ticks)
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

kv() { # KEY LINE : the value of KEY=… in a key=value line (empty when absent)
  tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2; exit}'
}

calc() { python3 -c "import math; print($1)"; }

verdict() { # EXPRESSION (Python, true = met) -> "met" / "**not met**" (runs in subshells:
  # the misses are counted in a file)
  if [[ $(calc "bool($1)") == True ]]; then
    echo "met"
  else
    echo "$1" >>"$TMP/unmet"
    echo "**not met**"
  fi
}

report() { tee -a "$OUT_MD"; }

url() { echo "http://127.0.0.1:${PORT[$1]}"; }

# --- header -----------------------------------------------------------------------------------

{
  echo "# partner-gateway fleet mode figures ($STAMP)"
  echo
  echo "- date: $(date -R); $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- partner-gateway $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)') (release build); $(redis-server --version | cut -d' ' -f1-3)"
  echo "- gateways on CPU $SERVER_CPU; wrk, clients, origin/simulator and redis-server on CPU $CLIENT_CPU; log.level warn; cache.ttl 1h; fleet.timeout ${FLEET_TIMEOUT_MS}ms (default)"
  echo "- parts: $PARTS"
  echo
} | report

# --- (a) L1 hits, fleet on vs off -----------------------------------------------------------

wrk_rps() { awk '/^Requests\/sec:/{print $2}' "$1"; }
wrk_p99() { # wrk's p99 in ms
  awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; print v}' "$1"
}

part_a() {
  log "(a) L1 hits, fleet mode on vs off: $ROUNDS pairs x ${DURATION}s"
  FLEET_NAME=bench-a
  start_redis
  start_origin
  start_gateway on on
  start_gateway off off
  wait_fleet 1 on
  local path=/v1/customers/0e5fc923-8e3c-4560-9100-ce7283c3e081/orders/5e2a1c3b-0000-4000-8000-000000000001
  local g
  for g in on off; do
    curl -sf -o /dev/null -H "$AUTH_HEADER" "$(url $g)$path" || die "(a) $g: warming GET failed"
    [[ $(curl -s -o /dev/null -D - -H "$AUTH_HEADER" "$(url $g)$path" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}') == HIT ]] ||
      die "(a) $g: the order is not a cache hit"
  done
  local rows=() ratios=() r order first second out rps_on rps_off p99_on p99_off c0 c1 redis_on=0 on_requests=0
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="on off"; else order="off on"; fi
    for g in $order; do
      out=$TMP/wrk-a-$r-$g.txt
      [[ $g == on ]] && c0=$(redis_commands)
      run "$out" "${ON_CLIENT[@]}" wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency -H "$AUTH_HEADER" "$(url $g)$path" ||
        die "(a) wrk failed: $(tail -n 5 "$out")"
      if [[ $g == on ]]; then
        c1=$(redis_commands)
        redis_on=$((redis_on + c1 - c0))
        on_requests=$((on_requests + $(awk '/requests in/{print $1}' "$out")))
      fi
      grep -q 'Non-2xx' "$out" && die "(a) $g: non-2xx answers: $(grep Non-2xx "$out")"
    done
    rps_on=$(wrk_rps "$TMP/wrk-a-$r-on.txt")
    rps_off=$(wrk_rps "$TMP/wrk-a-$r-off.txt")
    p99_on=$(wrk_p99 "$TMP/wrk-a-$r-on.txt")
    p99_off=$(wrk_p99 "$TMP/wrk-a-$r-off.txt")
    ratios+=("$(calc "$rps_on / $rps_off")")
    rows+=("| $r | ${order// /, } | $rps_on | $rps_off | $(calc "round($rps_on / $rps_off, 3)") | $p99_on | $p99_off |")
    log "(a) round $r: on $rps_on req/s, off $rps_off req/s"
  done
  local median list
  list=${ratios[*]}
  median=$(calc "__import__('statistics').median([${list// /,}])")
  local misses
  misses=$(metric on 'partner_gateway_upstream_requests_total')
  {
    echo "## (a) L1 hits: fleet mode on vs off"
    echo
    echo "One warmed order, \`wrk -t1 -c$CONNECTIONS -d${DURATION}s\`, $ROUNDS pairs, the order flipped each round; \"on\" has fleet mode (Redis up, 1 replica), \"off\" has none."
    echo
    echo "| pair | order | on req/s | off req/s | on/off | on p99 (ms) | off p99 (ms) |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
    echo
    echo "- median of pair ratios: **$(calc "round($median, 3)")** (target >= 0.97): $(verdict "$median >= 0.97")"
    echo "- Redis commands during the \"on\" runs: $redis_on for $on_requests hits (heartbeats and the like; the L1 hit path asks Redis nothing); upstream requests of \"on\" in all: $misses (the warming one)"
    echo
  } | report
  stop_all
}

# --- (b) L2 hits vs L1 hits -----------------------------------------------------------------

part_b() {
  log "(b) L2 hits: $KEYS_B orders filled through A, read through B twice"
  FLEET_NAME=bench-b
  start_redis
  start_origin
  start_gateway A on
  start_gateway B on
  wait_fleet 2 A B
  local fill pair l2 l1 b0 b1 b2 r0 r1 r2 h0 h1 h2
  load sweep --targets "$(url A)" --keys $((2 * KEYS_B)) --concurrency 32
  fill=$LOAD_OUT
  [[ $(kv miss "$fill") == $((2 * KEYS_B)) ]] || die "(b) the fill through A was not all MISS: $fill"
  h0=$(metric B 'partner_gateway_fleet_l2_lookups_total{result="hit"}')
  load sweep --targets "$(url B)" --keys "$KEYS_B" --concurrency 1 --twice 1
  pair=$LOAD_OUT
  h1=$(metric B 'partner_gateway_fleet_l2_lookups_total{result="hit"}')
  local pair_l2hits=$((h1 - h0))
  h0=$h1
  b0=$(cpu_ticks "${PID[B]}")
  r0=$(cpu_ticks "${PID[redis]}")
  load sweep --targets "$(url B)" --keys "$KEYS_B" --first "$KEYS_B" --concurrency 1
  l2=$LOAD_OUT
  h1=$(metric B 'partner_gateway_fleet_l2_lookups_total{result="hit"}')
  b1=$(cpu_ticks "${PID[B]}")
  r1=$(cpu_ticks "${PID[redis]}")
  load sweep --targets "$(url B)" --keys "$KEYS_B" --first "$KEYS_B" --concurrency 1
  l1=$LOAD_OUT
  h2=$(metric B 'partner_gateway_fleet_l2_lookups_total{result="hit"}')
  b2=$(cpu_ticks "${PID[B]}")
  r2=$(cpu_ticks "${PID[redis]}")
  local upstream_b added added_sep cpu_l2 cpu_l1 rcpu_l2
  upstream_b=$(metric B 'partner_gateway_upstream_requests_total')
  added=$(calc "$(kv lat_p99_ms "$pair") - $(kv again_p99_ms "$pair")")
  added_sep=$(calc "$(kv lat_p99_ms "$l2") - $(kv lat_p99_ms "$l1")")
  cpu_l2=$(calc "($b1 - $b0) * 1e6 / $CLK_TCK / $KEYS_B")
  cpu_l1=$(calc "($b2 - $b1) * 1e6 / $CLK_TCK / $KEYS_B")
  rcpu_l2=$(calc "($r1 - $r0) * 1e6 / $CLK_TCK / $KEYS_B")
  {
    echo "## (b) L2 hits (L1 empty) vs L1 hits"
    echo
    echo "$((2 * KEYS_B)) distinct orders filled through replica A ($(kv seconds "$fill") s, all MISS). Through B, one request at a time: $KEYS_B of them each read twice in a row (L2 hit, then L1 hit: \"paired\"); the other $KEYS_B in a pass of L2 hits, then a pass of L1 hits (\"separate\", for CPU)."
    echo
    echo "| reads on B | X-Cache HIT | L2 hits (metric) | p50 (ms) | p99 (ms) | max (ms) | req/s | B CPU µs/req | redis CPU µs/req |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| paired: L2 hit | $(kv hit "$pair") | $pair_l2hits | $(kv lat_p50_ms "$pair") | $(kv lat_p99_ms "$pair") | $(kv lat_max_ms "$pair") | - | - | - |"
    echo "| paired: L1 hit | $(kv again_hit "$pair") | | $(kv again_p50_ms "$pair") | $(kv again_p99_ms "$pair") | $(kv again_max_ms "$pair") | - | - | - |"
    echo "| separate: L2 hit | $(kv hit "$l2") | $((h1 - h0)) | $(kv lat_p50_ms "$l2") | $(kv lat_p99_ms "$l2") | $(kv lat_max_ms "$l2") | $(kv rps "$l2") | $(calc "round($cpu_l2)") | $(calc "round($rcpu_l2)") |"
    echo "| separate: L1 hit | $(kv hit "$l1") | $((h2 - h1)) | $(kv lat_p50_ms "$l1") | $(kv lat_p99_ms "$l1") | $(kv lat_max_ms "$l1") | $(kv rps "$l1") | $(calc "round($cpu_l1)") | $(calc "round(($r2 - $r1) * 1e6 / $CLK_TCK / $KEYS_B)") |"
    echo
    echo "- every first read through B an L2 hit, every second an L1 hit: $(verdict "$(kv hit "$pair") == $KEYS_B == $pair_l2hits == $(kv again_hit "$pair") and $(kv hit "$l2") == $KEYS_B == $((h1 - h0)) and $(kv hit "$l1") == $KEYS_B and $((h2 - h1)) == 0 and $upstream_b == 0") ($upstream_b upstream requests from B)"
    echo "- added p99 of an L2 hit over an L1 hit (paired): **$(calc "round($added, 3)") ms** (target <= 1 ms): $(verdict "$added <= 1.0") (separate passes: $(calc "round($added_sep, 3)") ms; added p50: $(calc "round($(kv lat_p50_ms "$pair") - $(kv again_p50_ms "$pair"), 3)") ms)"
    echo "- added CPU per request on B: $(calc "round($cpu_l2 - $cpu_l1)") µs (L2 $(calc "round($cpu_l2)") µs vs L1 $(calc "round($cpu_l1)") µs; /proc utime+stime at $CLK_TCK ticks/s); redis-server: $(calc "round($rcpu_l2)") µs per L2 hit"
    echo
  } | report
  stop_all
}

# --- (c) stampede over three replicas ---------------------------------------------------------

part_c() {
  log "(c) stampede: $STAMPEDE requests over 3 replicas, upstream latency $LATENCY_C"
  FLEET_NAME=bench-c
  start_redis
  start_simulator --latency "$LATENCY_C"
  start_gateway A on
  start_gateway B on
  start_gateway C on
  wait_fleet 3 A B C
  local path=${SIM_PATHS[0]} out upstream waits coalesced
  load stampede --targets "$(url A),$(url B),$(url C)" --count "$STAMPEDE" --path "$path"
  out=$LOAD_OUT
  upstream=$(metric_sum partner_gateway_upstream_requests_total A B C)
  waits=$(metric_sum partner_gateway_fleet_lease_waits_total A B C)
  coalesced=$(metric_sum partner_gateway_coalesced_waits_total A B C)
  {
    echo "## (c) One fill for the fleet"
    echo
    echo "$STAMPEDE concurrent requests (one connection each, round-robin over 3 replicas) for one cold order, simulator latency $LATENCY_C: $(kv ok "$out") answered 200."
    echo
    echo "- upstream requests (sum of the replicas' \`partner_gateway_upstream_requests_total\`): **$upstream** (target 1): $(verdict "$upstream == 1")"
    echo "- all answered 200: $(verdict "$(kv ok "$out") == $STAMPEDE"); lease waits (other replicas waiting for the fill): $waits; coalesced waits within a replica: $coalesced"
    echo
  } | report
  stop_all
}

# --- (d) write -> all replicas confirmed; write-then-read races ----------------------------------

part_d() {
  log "(d) $RACES write-then-read races over 3 replicas (+ the same without fleet mode)"
  FLEET_NAME=bench-d
  start_redis
  start_simulator
  start_gateway A on
  start_gateway B on
  start_gateway C on
  start_gateway alone off
  wait_fleet 3 A B C
  local on off sent received
  load races --writer "$(url A)" --readers "$(url B),$(url C)" \
    --warm "$(url A),$(url B),$(url C)" --count "$RACES" --path "${SIM_PATHS[0]}"
  on=$LOAD_OUT
  load races --writer "$(url alone)" --readers "$(url alone)" \
    --warm "$(url alone)" --count "$RACES" --path "${SIM_PATHS[1]}"
  off=$LOAD_OUT
  sent=$(metric A 'partner_gateway_fleet_invalidations_total{direction="sent"}')
  received=$(metric_sum 'partner_gateway_fleet_invalidations_total{direction="received"}' B C)
  {
    echo "## (d) Write answered once every replica confirmed; write-then-read races"
    echo
    echo "$RACES races: the order read through A, B and C (B and C twice, so that it is in their memory), PATCHed through A, then read through B and C at once. Reference: the same write through one gateway without fleet mode (read back through itself). Simulator latency 0."
    echo
    echo "| write through | PATCH p50 (ms) | p99 (ms) | max (ms) | failed writes | reads after the write | stale reads | other etag | reader had it cached (of $((2 * RACES))) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| A, fleet of 3 | $(kv write_p50_ms "$on") | $(kv write_p99_ms "$on") | $(kv write_max_ms "$on") | $(kv writes_failed "$on") | $(kv reads "$on") | $(kv stale "$on") | $(kv other_etag "$on") | $(kv readers_cached_before "$on") |"
    echo "| gateway without fleet mode | $(kv write_p50_ms "$off") | $(kv write_p99_ms "$off") | $(kv write_max_ms "$off") | $(kv writes_failed "$off") | $(kv reads "$off") | $(kv stale "$off") | $(kv other_etag "$off") | - |"
    echo
    echo "- write p99 with every replica confirming: **$(kv write_p99_ms "$on") ms** (target <= 50 ms): $(verdict "$(kv write_p99_ms "$on") <= 50 and $(kv writes_failed "$on") == 0")"
    echo "- stale reads through B and C: **$(kv stale "$on")** in $RACES races (target 0): $(verdict "$(kv stale "$on") == 0 and $(kv other_etag "$on") == 0")"
    echo "- the races were real (the readers held the order before each write): $(verdict "$(kv readers_cached_before "$on") == 2 * $RACES"); invalidations sent by A: $sent, received by B and C: $received"
    echo
  } | report
  stop_all
}

# --- (e) one budget for the fleet -----------------------------------------------------------

part_e() {
  local offered_rate
  offered_rate=$(calc "max(1, round($OFFER_FACTOR * $BUDGET_E / 60))")
  log "(e) fleet budget: $offered_rate req/s offered for ${DURATION_E}s, simulator budget $BUDGET_E/min, gateway rps $RPS_E burst $BURST_E"
  FLEET_NAME=bench-e
  start_redis
  start_simulator --budget-per-minute "$BUDGET_E" --latency "$LATENCY_E"
  local extra=(PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_RPS="$RPS_E" PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_BURST="$BURST_E")
  start_gateway A on "${extra[@]}"
  start_gateway B on "${extra[@]}"
  start_gateway C on "${extra[@]}"
  wait_fleet 3 A B C
  local out upstream up429 up404 client429 throttled rate_per_min ratio
  load rate --targets "$(url A),$(url B),$(url C)" --rate "$offered_rate" --seconds "$DURATION_E"
  out=$LOAD_OUT
  upstream=$(metric_sum partner_gateway_upstream_requests_total A B C)
  up429=$(metric_sum 'partner_gateway_upstream_requests_total{status="429"}' A B C)
  up404=$(metric_sum 'partner_gateway_upstream_requests_total{status="404"}' A B C)
  client429=$(kv s429_gateway "$out")
  throttled=$(kv s429_throttled "$out")
  rate_per_min=$(calc "$upstream * 60 / $(kv offered_seconds "$out")")
  ratio=$(calc "$rate_per_min / $BUDGET_E - 1")
  {
    echo "## (e) One budget for the fleet"
    echo
    echo "Simulator: budget $BUDGET_E requests per minute per credential (fixed window from the first request), latency $LATENCY_E. Three replicas with \`upstream.rate_limit_rps = $RPS_E\`, \`rate_limit_burst = $BURST_E\` (the fleet's whole budget: $((RPS_E * 60 + BURST_E)) in the first minute at most). Offered open loop: $offered_rate req/s ($OFFER_FACTOR x the budget) of distinct uncached orders (the simulator answers 404: every admitted request goes upstream), round-robin over the replicas, for $(kv offered_seconds "$out") s."
    echo
    echo "| offered | upstream requests | upstream per min | budget per min | upstream vs budget | upstream 429 | 429 GatewayRateLimited to clients | 429 UpstreamThrottled to clients | answers by status |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    echo "| $(kv offered "$out") | $upstream ($up404 × 404) | $(calc "round($rate_per_min, 1)") | $BUDGET_E | $(calc "'%+.1f %%' % ($ratio * 100)") | $up429 | ${client429:-0} | ${throttled:-0} | $(tr ' ' '\n' <<<"$out" | awk -F= '/^s/{printf "%s%s: %s", sep, substr($1, 2), $2; sep=", "}') |"
    echo
    echo "- upstream rate within the budget, 0 to -5 %: $(verdict "-0.05 <= $ratio <= 0")"
    echo "- upstream 429s: **$up429** (target 0): $(verdict "$up429 == 0")"
    echo
  } | report
  stop_all
}

# --- (f) Redis killed mid-run -----------------------------------------------------------------

part_f() {
  local split=$((DURATION_F / 2))
  log "(f) Redis killed after ${split}s of a ${DURATION_F}s mix of hits and misses over 3 replicas"
  FLEET_NAME=bench-f
  start_redis
  start_origin
  start_gateway A on
  start_gateway B on
  start_gateway C on
  wait_fleet 3 A B C
  local g warm targets out load_pid redis_pid ups readyz
  load sweep --targets "$(url A)" --keys "$HOT_F" --concurrency 16
  for g in B C A; do
    load sweep --targets "$(url $g)" --keys "$HOT_F" --concurrency 16
    load sweep --targets "$(url $g)" --keys "$HOT_F" --concurrency 16
    warm=$LOAD_OUT
    [[ $(kv hit "$warm") == "$HOT_F" ]] || die "(f) $g: the warmed orders are not all hits: $warm"
  done
  targets="$(url A),$(url B),$(url C)"
  "${LOAD[@]}" mixed --targets "$targets" --rate "$RATE_F" --seconds "$DURATION_F" --split "$split" \
    --hot "$HOT_F" >"$TMP/mixed.txt" 2>&1 &
  load_pid=$!
  STARTED+=("$load_pid")
  sleep "$split"
  redis_pid=${PID[redis]}
  kill -KILL "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  forget "$redis_pid"
  unset 'PID[redis]'
  log "(f) redis-server (PID $redis_pid) killed"
  wait "$load_pid" || die "(f) the load failed: $(cat "$TMP/mixed.txt")"
  forget "$load_pid"
  out=$(cat "$TMP/mixed.txt")
  ups=""
  for g in A B C; do ups+="$g $(metric $g partner_gateway_fleet_up), "; done
  readyz=""
  for g in A B C; do readyz+="$g $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ADMIN[$g]}/readyz"), "; done
  local b99 a99 fails
  b99=$(kv before_hit_p99_ms "$out")
  a99=$(kv after_hit_p99_ms "$out")
  fails=$(($(kv before_5xx "$out") + $(kv after_5xx "$out") + $(kv before_no_answer "$out") + $(kv after_no_answer "$out")))
  {
    echo "## (f) Redis killed mid-run"
    echo
    echo "Three replicas on the bench origin, $HOT_F orders warmed on each; $RATE_F req/s (16 paced connections, round-robin), 90 % hits on the warmed orders and 10 % new orders, for $DURATION_F s; redis-server SIGKILLed at ${split} s."
    echo
    echo "| phase | requests | 5xx | no answer | hits | hit p50 (ms) | hit p99 (ms) | hit max (ms) | warmed but not HIT | misses | miss p99 (ms) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    local p
    for p in before after; do
      echo "| $p the kill | $(kv ${p}_requests "$out") | $(kv ${p}_5xx "$out") | $(kv ${p}_no_answer "$out") | $(kv ${p}_hits "$out") | $(kv ${p}_hit_p50_ms "$out") | $(kv ${p}_hit_p99_ms "$out") | $(kv ${p}_hit_max_ms "$out") | $(kv ${p}_hot_not_hit "$out") | $(kv ${p}_misses "$out") | $(kv ${p}_miss_p99_ms "$out") |"
    done
    echo
    echo "- 5xx and unanswered requests: **$fails** (target 0): $(verdict "$fails == 0")"
    echo "- hit p99 while Redis is down: **$a99 ms** vs $b99 ms before (target: at most fleet.timeout = $FLEET_TIMEOUT_MS ms more, SPEC §12.5): $(verdict "$a99 <= $b99 + $FLEET_TIMEOUT_MS")"
    echo "- afterwards: fleet_up ${ups%, }; /readyz ${readyz%, }"
    echo
  } | report
  stop_all
}

START_SECONDS=$SECONDS
for part in a b c d e f; do
  [[ " $PARTS " == *" $part "* ]] && "part_$part"
done
ELAPSED=$((SECONDS - START_SECONDS))
UNMET=0
[[ -f $TMP/unmet ]] && UNMET=$(wc -l <"$TMP/unmet")
{
  echo "---"
  echo "Targets not met: **$UNMET**. Measuring took $((ELAPSED / 60)) min $((ELAPSED % 60)) s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | report
log "written: $OUT_MD"
if ((UNMET > 0 && STRICT == 1)); then exit 2; fi
exit 0
