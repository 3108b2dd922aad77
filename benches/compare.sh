#!/usr/bin/env bash
# Comparison benchmark (issue 7): partner-gateway against nginx proxy_cache, Varnish, a static
# hyper server (the ceiling) and a bare hyper forwarding proxy (the miss-path reference), all in
# front of the same bench origin, on loopback only.
#
#   benches/compare.sh                         # defaults: 3 rounds x 6 s per cell: ~5.5 min
#                                              # of measuring + the build (7 min 17 s measured)
#   ROUNDS=1 DURATION=3 benches/compare.sh     # a quick smoke run (~1 min + the build)
#
# What it does: installs nginx, varnish and wrk with apt when missing; builds the gateway and the
# bench programs (release); starts the origin (benches/programs/origin.rs), two gateways (access
# log on = log.level info, off = warn), two nginx (access log on/off), one Varnish, the static
# server and the forwarding proxy, each on its own free 127.0.0.1 port; verifies every target
# (right order body, cache hits where expected, log on/off); then runs the cells round by round
# with wrk, rotating the order each round, and prints a Markdown table (also written to
# target/bench/compare-<timestamp>.md, raw rows next to it as .tsv).
#
# CPU placement: every server on SERVER_CPU (it gets one core); wrk, the origin and the
# verification client on CLIENT_CPU. Every request carries `Authorization: Bearer bench`.
#
# Knobs (environment):
#   ROUNDS=3          rounds; each round runs every cell once
#   DURATION=6        seconds of wrk per cell and round
#   CONNECTIONS=64    wrk connections       THREADS=1   wrk threads (it has one core)
#   KEYS=1000         order paths of the "hit, N keys" cell
#   CACHE_TTL=1h      fresh lifetime in every cache (gateway cache.ttl, nginx proxy_cache_valid,
#                     Varnish beresp.ttl): long, so that hit cells really hit in every round
#   TARGETS="gateway nginx varnish static forward"   which targets to run
#   CELLS="hit1 hitN miss static"                     which cells to run
#   SERVER_CPU=0 CLIENT_CPU=1
#   SKIP_BUILD=1      use the binaries already in target/release
#   GATEWAY_BIN=PATH  measure this gateway binary instead (e.g. one built from an earlier commit,
#                     for a before/after pair of runs); the table's header names it
#   KEEP_TMP=1        keep the temp dir (configs, logs, wrk outputs) and say where it is
# PARTNER_GATEWAY__* variables in the environment reach the gateways (e.g.
# PARTNER_GATEWAY__CACHE__PARTITION=shared), except the keys this script sets itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$ROOT/benches
HELPER=(python3 "$BENCHES/lib/compare_helper.py")
export PATH="$PATH:/usr/sbin:/sbin"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
KEYS=${KEYS:-1000}
CACHE_TTL=${CACHE_TTL:-1h}
TARGETS=${TARGETS:-gateway nginx varnish static forward}
CELLS=${CELLS:-hit1 hitN miss static}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
export KEYS

CUSTOMER=0e5fc923-8e3c-4560-9100-ce7283c3e081
HIT1_ORDER=5e2a1c3b-0000-4000-8000-000000000001
HIT1_PATH=/v1/customers/$CUSTOMER/orders/$HIT1_ORDER
AUTH_HEADER='Authorization: Bearer bench'

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

for knob in ROUNDS DURATION CONNECTIONS THREADS KEYS SERVER_CPU CLIENT_CPU; do
  [[ ${!knob} =~ ^[0-9]+$ ]] || die "$knob must be a whole number (got '${!knob}')"
done
((ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= 1 && THREADS >= 1 && KEYS >= 1)) ||
  die "ROUNDS, DURATION, CONNECTIONS, THREADS and KEYS must be at least 1"
[[ $CACHE_TTL =~ ^[0-9]+[smhd]$ ]] || die "CACHE_TTL must look like 30s, 10m, 1h (got '$CACHE_TTL')"

START_SECONDS=$SECONDS
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$ROOT/target/bench
OUT_MD=$OUT_DIR/compare-$STAMP.md
OUT_TSV=$OUT_DIR/compare-$STAMP.tsv

# --- processes: every one this script starts is recorded here and ended by PID on exit -------

STARTED=() # PIDs of the processes this script started (nginx/varnishd: their masters)
TMP=""
SHM=""
declare -A PID=()

proc_state() { # prints the state letter of PID (empty when gone)
  local line
  line=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  line=${line##*) }
  printf '%s' "${line%% *}"
}

alive() {
  local state
  state=$(proc_state "$1")
  [[ -n $state && $state != Z ]]
}

children_of() { # "pid:comm" of the live children of PID
  local kid
  for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
    printf '%s:%s\n' "$kid" "$(cat "/proc/$kid/comm" 2>/dev/null || true)"
  done
}

cleanup() {
  local rc=$? pid entry kids=() i
  trap - EXIT INT TERM
  if ((${#STARTED[@]})); then
    for pid in "${STARTED[@]}"; do
      alive "$pid" || continue
      while IFS= read -r entry; do [[ -n $entry ]] && kids+=("$entry"); done < <(children_of "$pid")
      kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 100; i++)); do
      local any=0
      for pid in "${STARTED[@]}"; do alive "$pid" && any=1; done
      ((any)) || break
      sleep 0.1
    done
    for pid in "${STARTED[@]}"; do
      if alive "$pid"; then
        log "PID $pid did not stop on SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    # Children of nginx/varnishd masters exit with them; any left over (same PID, same name) is
    # ended too.
    for entry in "${kids[@]+"${kids[@]}"}"; do
      pid=${entry%%:*}
      if alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null || true) == "${entry#*:}" ]]; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait 2>/dev/null || true
  fi
  [[ -n $SHM ]] && rm -rf "$SHM"
  if [[ -n $TMP ]]; then
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
      log "temp dir kept: $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

spawn() { # NAME LOGFILE COMMAND... : start in the background, remember the PID
  local name=$1 logfile=$2
  shift 2
  "$@" >>"$logfile" 2>&1 </dev/null &
  PID[$name]=$!
  STARTED+=("$!")
}

wait_port() { # NAME PORT : poll until 127.0.0.1:PORT accepts, fail if the process died
  local name=$1 port=$2 i
  for ((i = 0; i < 600; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    alive "${PID[$name]}" || die "$name exited during start-up; its log: $(tail -n 20 "${LOGF[$name]}" 2>/dev/null)"
    sleep 0.05
  done
  die "$name did not listen on 127.0.0.1:$port within 30 s; its log: $(tail -n 20 "${LOGF[$name]}" 2>/dev/null)"
}

# --- 1. tools ----------------------------------------------------------------------------------

install_missing() {
  local missing=() sudo=()
  command -v nginx >/dev/null || missing+=(nginx)
  command -v varnishd >/dev/null || missing+=(varnish)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v ps >/dev/null || missing+=(procps)
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing with apt: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
    "${sudo[@]+"${sudo[@]}"}" apt-get update
  fi
  if ! "${sudo[@]+"${sudo[@]}"}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${sudo[@]+"${sudo[@]}"}" apt-get update
    "${sudo[@]+"${sudo[@]}"}" apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}
install_missing
for tool in nginx varnishd wrk curl taskset ps python3 cargo getconf; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
NCPU=$(getconf _NPROCESSORS_ONLN)
((SERVER_CPU < NCPU && CLIENT_CPU < NCPU)) || die "needs CPUs $SERVER_CPU and $CLIENT_CPU; this machine has $NCPU"
((SERVER_CPU != CLIENT_CPU)) || log "warning: SERVER_CPU = CLIENT_CPU; servers and wrk share one core"
CLK_TCK=$(getconf CLK_TCK)

# --- 2. build ----------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
  log "building (cargo build --release; the bench programs with --example)"
  (cd "$ROOT" && cargo build --release --quiet &&
    cargo build --release --quiet --example bench-origin --example bench-static \
      --example bench-forward-proxy) || die "cargo build failed"
fi
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/partner-gateway}
EXAMPLES=$ROOT/target/release/examples
for bin in "$GATEWAY_BIN" "$EXAMPLES/bench-origin" "$EXAMPLES/bench-static" "$EXAMPLES/bench-forward-proxy"; do
  [[ -x $bin ]] || die "$bin missing (run without SKIP_BUILD=1)"
done

# --- 3. cells ----------------------------------------------------------------------------------

# target:cell:log, interleaved so that consecutive cells hit different servers.
ALL_CELLS=(
  gateway:hit1:on nginx:hit1:on varnish:hit1:- static:static:- gateway:hit1:off nginx:hit1:off
  gateway:hitN:on nginx:hitN:on varnish:hitN:- gateway:hitN:off nginx:hitN:off
  gateway:miss:on nginx:miss:on forward:miss:- gateway:miss:off nginx:miss:off
)
RUN_CELLS=()
declare -A NEED=()
for spec in "${ALL_CELLS[@]}"; do
  IFS=: read -r target cell lg <<<"$spec"
  [[ " $TARGETS " == *" $target "* && " $CELLS " == *" $cell "* ]] || continue
  RUN_CELLS+=("$spec")
  case $target:$lg in
    gateway:on) NEED[gateway-on]=1 ;;
    gateway:off) NEED[gateway-off]=1 ;;
    nginx:on) NEED[nginx-on]=1 ;;
    nginx:off) NEED[nginx-off]=1 ;;
    *) NEED[$target]=1 ;;
  esac
done
((${#RUN_CELLS[@]})) || die "no cell selected (TARGETS='$TARGETS' CELLS='$CELLS')"

instance_of() { # TARGET LOG -> instance name
  case $1 in
    gateway | nginx) printf '%s-%s' "$1" "$2" ;;
    *) printf '%s' "$1" ;;
  esac
}

# --- 4. start everything -----------------------------------------------------------------------

TMP=$(mktemp -d /tmp/pgw-compare.XXXXXX)
SHM=$(mktemp -d /dev/shm/pgw-compare.XXXXXX)
mkdir -p "$OUT_DIR"
"${HELPER[@]}" paths "$TMP/paths-1.txt" 1
"${HELPER[@]}" paths "$TMP/paths-N.txt" "$KEYS"
[[ $(head -n 1 "$TMP/paths-1.txt") == "$HIT1_PATH" ]] || die "paths file and HIT1_PATH disagree"

read -r P_ORIGIN P_STATIC P_FORWARD P_GW_ON P_ADM_ON P_GW_OFF P_ADM_OFF P_NGX_ON P_NGX_OFF P_VARNISH \
  < <("${HELPER[@]}" ports 10)
declare -A PORT=([origin]=$P_ORIGIN [static]=$P_STATIC [forward]=$P_FORWARD [gateway-on]=$P_GW_ON
  [gateway-off]=$P_GW_OFF [nginx-on]=$P_NGX_ON [nginx-off]=$P_NGX_OFF [varnish]=$P_VARNISH)
declare -A KIND=([origin]=none [static]=none [forward]=none [gateway-on]=gateway
  [gateway-off]=gateway [nginx-on]=nginx [nginx-off]=nginx [varnish]=varnish)
declare -A LOGF=([origin]=$TMP/origin.log [static]=$TMP/static.log [forward]=$TMP/forward.log
  [gateway-on]=$TMP/gateway-on.log [gateway-off]=$TMP/gateway-off.log
  [nginx-on]=$TMP/nginx-on/stderr.log [nginx-off]=$TMP/nginx-off/stderr.log
  [varnish]=$TMP/varnish.log)
declare -A ACCESS_LOG=([gateway-on]=$TMP/gateway-on.log [gateway-off]=$TMP/gateway-off.log
  [nginx-on]=$TMP/nginx-on/access.log [nginx-off]=$TMP/nginx-off/access.log)

ON_SERVER=(taskset -c "$SERVER_CPU")
ON_CLIENT=(taskset -c "$CLIENT_CPU")

log "origin on 127.0.0.1:$P_ORIGIN (CPU $CLIENT_CPU)"
spawn origin "${LOGF[origin]}" "${ON_CLIENT[@]}" "$EXAMPLES/bench-origin" --listen "127.0.0.1:$P_ORIGIN"
wait_port origin "$P_ORIGIN"

if [[ -n ${NEED[static]:-} ]]; then
  spawn static "${LOGF[static]}" "${ON_SERVER[@]}" "$EXAMPLES/bench-static" \
    --listen "127.0.0.1:$P_STATIC" --customer "$CUSTOMER" --order "$HIT1_ORDER"
fi
if [[ -n ${NEED[forward]:-} ]]; then
  spawn forward "${LOGF[forward]}" "${ON_SERVER[@]}" "$EXAMPLES/bench-forward-proxy" \
    --listen "127.0.0.1:$P_FORWARD" --upstream "127.0.0.1:$P_ORIGIN"
fi

for variant in on off; do
  inst=gateway-$variant
  [[ -n ${NEED[$inst]:-} ]] || continue
  if [[ $variant == on ]]; then level=info; else level=warn; fi
  front=${PORT[$inst]}
  if [[ $variant == on ]]; then admin=$P_ADM_ON; else admin=$P_ADM_OFF; fi
  spawn "$inst" "${LOGF[$inst]}" env -u RUST_LOG -C "$TMP" \
    PARTNER_GATEWAY__SERVER__LISTEN="127.0.0.1:$front" \
    PARTNER_GATEWAY__ADMIN__LISTEN="127.0.0.1:$admin" \
    PARTNER_GATEWAY__UPSTREAM__BASE_URL="http://127.0.0.1:$P_ORIGIN" \
    PARTNER_GATEWAY__CACHE__TTL="$CACHE_TTL" \
    PARTNER_GATEWAY__LOG__LEVEL="$level" \
    "${ON_SERVER[@]}" "$GATEWAY_BIN" run
done

for variant in on off; do
  inst=nginx-$variant
  [[ -n ${NEED[$inst]:-} ]] || continue
  dir=$TMP/$inst
  mkdir -p "$dir" "$SHM/$inst"
  if [[ $variant == on ]]; then access="$dir/access.log"; else access=off; fi
  if [[ $(id -u) -eq 0 ]]; then user_line="user root;"; else user_line=""; fi
  sed -e "s|@DIR@|$dir|g" -e "s|@USER_LINE@|$user_line|" -e "s|@ACCESS_LOG@|$access|" \
    -e "s|@CACHE_DIR@|$SHM/$inst|" -e "s|@ORIGIN_PORT@|$P_ORIGIN|" -e "s|@PORT@|${PORT[$inst]}|" \
    -e "s|@CACHE_TTL@|$CACHE_TTL|" "$BENCHES/conf/nginx.conf.in" >"$dir/nginx.conf"
  nginx -q -t -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stderr.log" 2>&1 ||
    die "nginx -t failed for $dir/nginx.conf: $(cat "$dir/stderr.log")"
  spawn "$inst" "${LOGF[$inst]}" "${ON_SERVER[@]}" \
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
done

VARNISH_THREADS_MIN=$((CONNECTIONS + 16))
VARNISH_THREADS_MAX=$((2 * CONNECTIONS + 100))
if [[ -n ${NEED[varnish]:-} ]]; then
  sed -e "s|@ORIGIN_PORT@|$P_ORIGIN|" -e "s|@CACHE_TTL@|$CACHE_TTL|" \
    "$BENCHES/conf/varnish.vcl.in" >"$TMP/varnish.vcl"
  # One core: one thread pool, enough threads for every connection (Varnish holds a worker
  # thread per busy client connection) but not its default 2 x 100..5000.
  spawn varnish "${LOGF[varnish]}" "${ON_SERVER[@]}" varnishd -F -n "$TMP/varnish" \
    -a "127.0.0.1:$P_VARNISH" -f "$TMP/varnish.vcl" -s malloc,256m -T none -j none \
    -p thread_pools=1 -p thread_pool_min=$VARNISH_THREADS_MIN \
    -p thread_pool_max=$VARNISH_THREADS_MAX
fi

for inst in static forward gateway-on gateway-off nginx-on nginx-off varnish; do
  [[ -n ${NEED[$inst]:-} ]] || continue
  wait_port "$inst" "${PORT[$inst]}"
done
for variant in on off; do
  [[ -n ${NEED[gateway-$variant]:-} ]] || continue
  if [[ $variant == on ]]; then admin=$P_ADM_ON; else admin=$P_ADM_OFF; fi
  wait_port "gateway-$variant" "$admin"
  curl -sf --max-time 5 "http://127.0.0.1:$admin/readyz" >/dev/null ||
    die "gateway-$variant: /readyz on 127.0.0.1:$admin is not 200"
done
log "started: $(for i in "${!PID[@]}"; do printf '%s=%s(pid %s) ' "$i" "${PORT[$i]}" "${PID[$i]}"; done)"

# --- 5. verify ---------------------------------------------------------------------------------

origin_count() {
  curl -sf --max-time 5 "http://127.0.0.1:$P_ORIGIN/__count" || die "origin count unreadable"
}

check() { # INSTANCE PATH [hit]
  "${ON_CLIENT[@]}" "${HELPER[@]}" check "127.0.0.1:${PORT[$1]}" "$2" "${KIND[$1]}" "${3:-}" >/dev/null ||
    die "verification of $1 failed (see above)"
}

log "verifying every target"
check origin "$HIT1_PATH"
n=0
for inst in gateway-on gateway-off nginx-on nginx-off varnish forward static; do
  [[ -n ${NEED[$inst]:-} ]] || continue
  n=$((n + 1))
  fresh=/v1/customers/$CUSTOMER/orders/$(printf 'c0ffee00-0000-4000-8000-%012x' "$n")
  before=$(origin_count)
  case $inst in
    static)
      check static "$HIT1_PATH"
      ;;
    forward)
      check forward "$fresh"
      check forward "$fresh"
      (($(origin_count) - before == 2)) || die "forward: 2 requests did not reach the origin twice"
      ;;
    *)
      check "$inst" "$fresh" hit
      (($(origin_count) - before == 1)) ||
        die "$inst: a MISS then a HIT should reach the origin once, got $(($(origin_count) - before))"
      ;;
  esac
done
for inst in gateway-on gateway-off nginx-on nginx-off; do
  [[ -n ${NEED[$inst]:-} ]] || continue
  if [[ $inst == *-on ]]; then
    grep -q "/v1/customers/$CUSTOMER/orders/" "${ACCESS_LOG[$inst]}" 2>/dev/null ||
      die "$inst: access logging should be on, but ${ACCESS_LOG[$inst]} has no request line"
  elif grep -q "/v1/customers/$CUSTOMER/orders/" "${ACCESS_LOG[$inst]}" 2>/dev/null; then
    die "$inst: access logging should be off, but ${ACCESS_LOG[$inst]} has request lines"
  fi
done
log "verified: right order bodies everywhere, cache hits on the second GET, logs on/off as configured"

# --- 6. measure --------------------------------------------------------------------------------

server_pids() { # INSTANCE -> the PIDs whose CPU time counts (masters and their children)
  local pid=${PID[$1]}
  printf '%s\n' "$pid"
  case $1 in
    nginx-* | varnish) ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true ;;
  esac
}

proc_ticks() { # PID -> utime + stime in clock ticks (0 when gone)
  local line fields
  line=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  line=${line##*) }
  read -r -a fields <<<"$line"
  echo $((fields[11] + fields[12]))
}

core_ticks() { # CPU -> "busy total" clock ticks of that core since boot (/proc/stat)
  awk -v cpu="cpu$1" '$1 == cpu {
    total = 0; for (i = 2; i <= 9; i++) total += $i   # user nice system idle iowait irq softirq steal
    print total - $5 - $6, total }' /proc/stat
}

declare -A TICKS_BEFORE=()
ticks_start() {
  local pid
  TICKS_BEFORE=()
  for pid in $(server_pids "$1"); do TICKS_BEFORE[$pid]=$(proc_ticks "$pid"); done
}
ticks_delta() { # sums after-before over processes seen at the start; new processes in full
  local pid total=0 now
  local -A seen=()
  for pid in $(server_pids "$1") "${!TICKS_BEFORE[@]}"; do
    [[ -n ${seen[$pid]:-} ]] && continue
    seen[$pid]=1
    now=$(proc_ticks "$pid")
    if [[ -n ${TICKS_BEFORE[$pid]:-} ]]; then
      ((now >= TICKS_BEFORE[$pid])) && total=$((total + now - TICKS_BEFORE[$pid]))
    else
      total=$((total + now))
    fi
  done
  echo "$total"
}

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
CPU_LSCPU=$(lscpu 2>/dev/null | awk -F: '
  /^Model name/ {gsub(/^[ \t]+/, "", $2); m = $2}
  /^CPU\(s\)/ {gsub(/^[ \t]+/, "", $2); c = $2}
  /^Hypervisor vendor/ {gsub(/^[ \t]+/, "", $2); h = ", " $2 " guest"}
  END {printf "%s, %s CPUs%s", m, c, h}' || true)
HEADER=$TMP/header.md
{
  echo "# partner-gateway comparison benchmark ($STAMP)"
  echo
  echo "- date: $(date -R)"
  echo "- CPU: ${CPU_MODEL:-unknown}, $NCPU cores online (\`lscpu\`: $CPU_LSCPU)"
  echo "- kernel: $(uname -sr); $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(varnishd -V 2>&1 | head -n 1 | sed 's/ revision.*//; s/^varnishd (//'), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  [[ $GATEWAY_BIN == "$ROOT/target/release/partner-gateway" ]] || echo "- gateway binary: $GATEWAY_BIN"
  echo "- partner-gateway $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)') (release build)"
  echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, \`$AUTH_HEADER\` on every request;" \
    "$ROUNDS round(s), cells in rotated order each round; servers on CPU $SERVER_CPU," \
    "wrk + origin on CPU $CLIENT_CPU; caches' TTL $CACHE_TTL"
  echo "- log: gateway on = \`log.level=info\` (JSON line per request), off = \`warn\`;" \
    "nginx on = \`access_log\` combined, off = \`access_log off\`; Varnish: no access log" \
    "(varnishncsa not running), thread_pools=1, threads $VARNISH_THREADS_MIN..$VARNISH_THREADS_MAX, malloc 256m"
  echo "- req/s: median over rounds (min..max); p50/p99: median over rounds of wrk's;" \
    "reaching origin: origin requests / client requests; server CPU: utime+stime of the" \
    "server's processes (nginx/Varnish: master + children) over the wrk runs / requests;" \
    "server core busy: share of CPU $SERVER_CPU busy during the runs (in brackets: by the server" \
    "itself; the rest is other load, e.g. a concurrent build); client core: CPU $CLIENT_CPU (wrk +" \
    "origin), near 100 % means the client side, not the server, set the pace"
} >"$HEADER"

SEED_BASE=$(((RANDOM << 15 | RANDOM) + 1))
RUN_NO=0
TOTAL_RUNS=$((ROUNDS * ${#RUN_CELLS[@]}))
NCELLS=${#RUN_CELLS[@]}
STEP=$(((NCELLS + ROUNDS - 1) / ROUNDS))

run_cell() { # ROUND TARGET CELL LOG
  local rnd=$1 target=$2 cell=$3 lg=$4 inst url seed out o0 o1 ticks
  inst=$(instance_of "$target" "$lg")
  url=http://127.0.0.1:${PORT[$inst]}
  RUN_NO=$((RUN_NO + 1))
  seed=$((SEED_BASE + RUN_NO))
  out=$TMP/wrk-$RUN_NO-$target-$cell-$lg.txt
  local wrk=("${ON_CLIENT[@]}" wrk "-t$THREADS" "-c$CONNECTIONS" "-d${DURATION}s" --latency -H "$AUTH_HEADER")
  case $cell in
    hit1)
      "${ON_CLIENT[@]}" "${HELPER[@]}" warm "127.0.0.1:${PORT[$inst]}" "$TMP/paths-1.txt" "${KIND[$inst]}" >/dev/null ||
        die "$inst: the hit-1 path is not a cache hit"
      wrk+=("$url$HIT1_PATH")
      ;;
    static) wrk+=("$url$HIT1_PATH") ;;
    hitN)
      "${ON_CLIENT[@]}" "${HELPER[@]}" warm "127.0.0.1:${PORT[$inst]}" "$TMP/paths-N.txt" "${KIND[$inst]}" >/dev/null ||
        die "$inst: not every one of the $KEYS paths is a cache hit"
      wrk+=(-s "$BENCHES/wrk/keys.lua" "$url" -- "$TMP/paths-N.txt" "$seed")
      ;;
    miss) wrk+=(-s "$BENCHES/wrk/miss.lua" "$url" -- "$CUSTOMER" "$seed") ;;
  esac
  log "round $rnd/$ROUNDS, run $RUN_NO/$TOTAL_RUNS: $target $cell log=$lg"
  o0=$(origin_count)
  ticks_start "$inst"
  read -r s0_busy s0_total < <(core_ticks "$SERVER_CPU")
  read -r c0_busy c0_total < <(core_ticks "$CLIENT_CPU")
  "${wrk[@]}" >"$out" 2>&1 || die "wrk failed for $target $cell log=$lg: $(tail -n 5 "$out")"
  read -r s1_busy s1_total < <(core_ticks "$SERVER_CPU")
  read -r c1_busy c1_total < <(core_ticks "$CLIENT_CPU")
  ticks=$(ticks_delta "$inst")
  o1=$(origin_count)
  alive "${PID[$inst]}" || die "$inst died during the run; its log: $(tail -n 20 "${LOGF[$inst]}")"
  "${HELPER[@]}" record "$OUT_TSV" "$rnd" "$target" "$cell" "$lg" "$out" $((o1 - o0)) "$ticks" "$CLK_TCK" \
    $((s1_busy - s0_busy)) $((s1_total - s0_total)) $((c1_busy - c0_busy)) $((c1_total - c0_total)) >&2
  if [[ $cell == hit* ]] && ((o1 - o0 > 0)); then
    log "WARNING: the origin received $((o1 - o0)) requests during this hit cell"
  fi
  # Keep the access logs from growing without bound (both are opened O_APPEND).
  if [[ -n ${ACCESS_LOG[$inst]:-} ]]; then : >"${ACCESS_LOG[$inst]}"; fi
}

log "measuring: $NCELLS cells x $ROUNDS rounds x ${DURATION}s"
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < NCELLS; i++)); do
    spec=${RUN_CELLS[$(((i + r * STEP) % NCELLS))]}
    IFS=: read -r target cell lg <<<"$spec"
    run_cell $((r + 1)) "$target" "$cell" "$lg"
  done
done

ELAPSED=$((SECONDS - START_SECONDS))
echo "- wall time of this run (build, start, verification, measuring): $((ELAPSED / 60)) min $((ELAPSED % 60)) s" >>"$HEADER"
set +e
"${HELPER[@]}" table "$OUT_TSV" "$OUT_MD" "$HEADER"
table_rc=$?
set -e
((table_rc == 0 || table_rc == 2)) || die "table failed"
log "written: $OUT_MD (raw rows: $OUT_TSV)"
((table_rc == 0)) || die "a hit cell reached the origin (see ✗ above)"
log "done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
