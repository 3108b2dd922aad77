#!/usr/bin/env bash
# CI check for deploy/: schema-validates the Kubernetes manifests, lints the Dockerfile and
# cross-checks the files against each other and against the gateway's configuration.
#
#   bash deploy/check.sh
#
# Needs python3 >= 3.11 and network access to PyPI (first run only: the tools are installed
# into a virtualenv that later runs reuse). Optional, used when present and skipped otherwise:
#   - kubectl (or kustomize): renders each kustomization.yaml and validates the result;
#   - a partner-gateway binary ($PARTNER_GATEWAY_BIN, else target/release, else target/debug):
#     runs `check-config` on every deployment's effective configuration;
#   - systemd-analyze: `verify` on the systemd unit.
# It never builds anything.
#
# Environment:
#   K8S_VERSIONS                  Kubernetes versions to validate against (default below)
#   PARTNER_GATEWAY_DEPLOY_VENV   virtualenv location (default $TMPDIR or /tmp, see below)
#   PARTNER_GATEWAY_BIN           gateway binary for check-config
#   PYTHON                        interpreter that creates the venv (default python3)
#
# Exit status: 0 when every check that ran passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# Oldest version these manifests target (native sidecars are on by default from 1.29) and the
# newest kubernetes-validate bundles schemas for.
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}
VENV=${PARTNER_GATEWAY_DEPLOY_VENV:-"${TMPDIR:-/tmp}/partner-gateway-deploy-venv"}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=deploy/requirements.txt

summary=()
passed=0
failed=0
skipped=0
record() { # status text...
  summary+=("$(printf '  %-7s %s' "$1" "${*:2}")")
  case $1 in
    ok) passed=$((passed + 1)) ;;
    FAILED) failed=$((failed + 1)) ;;
    *) skipped=$((skipped + 1)) ;;
  esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/partner-gateway-deploy-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- tools -----------------------------------------------------------------------------------
echo "== tools (virtualenv $VENV)"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "deploy/check.sh: $PYTHON >= 3.11 is required (tomllib)" >&2
  exit 1
fi
# Reinstall only when the requirements or the interpreter changed since the venv was made.
stamp="$("$PYTHON" -c 'import sys; print(sys.version)')
$(cat "$REQUIREMENTS")"
mkdir -p "$(dirname "$VENV")"
# Two checks sharing the default venv must not build it at the same time.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock 9
fi
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c '' 2>/dev/null ||
  [[ "$(cat "$VENV/.deploy-check-stamp" 2>/dev/null)" != "$stamp" ]]; then
  if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
    echo "deploy/check.sh: $VENV exists and is not a virtualenv; refusing to replace it" >&2
    exit 1
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$REQUIREMENTS"
  printf '%s' "$stamp" >"$VENV/.deploy-check-stamp"
fi
kv_version=$("$VENV/bin/kubernetes-validate" --version)
hadolint_version=$("$VENV/bin/hadolint" --version | awk '{print $NF}')
echo "kubernetes-validate $kv_version, hadolint $hadolint_version"

k8s_args=()
for v in $K8S_VERSIONS; do k8s_args+=(-k "$v"); done

# Runs kubernetes-validate in strict mode (unknown fields are errors). A kind/apiVersion it has
# no schema for is only a WARN with exit 0 in the tool, so any WARN line fails here too.
validate() { # files...
  local out rc=0
  out=$("$VENV/bin/kubernetes-validate" --strict "${k8s_args[@]}" "$@" 2>&1) || rc=$?
  grep -Ev '^INFO ' <<<"$out" || true
  [[ $rc -eq 0 ]] && ! grep -Eq '^(WARN|ERROR|FATAL)' <<<"$out"
}

# --- Kubernetes schemas ----------------------------------------------------------------------
echo "== kubernetes-validate --strict (Kubernetes $K8S_VERSIONS)"
mapfile -t manifests < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) \
  ! -name 'kustomization.y*ml' | LC_ALL=C sort)
# Resources = non-empty YAML documents.
count_resources() { "$VENV/bin/python" -c '
import sys, yaml
print(sum(1 for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d))' "$@"; }
if [[ ${#manifests[@]} -eq 0 ]]; then
  record FAILED "kubernetes-validate: no manifests under deploy/kubernetes"
elif validate "${manifests[@]}"; then
  record ok "kubernetes-validate $kv_version --strict (k8s ${K8S_VERSIONS// /, }):" \
    "$(count_resources "${manifests[@]}") resources in ${#manifests[@]} files"
else
  record FAILED "kubernetes-validate: see ERROR/WARN lines above"
fi

# --- kustomizations --------------------------------------------------------------------------
echo "== kustomize build"
if command -v kubectl >/dev/null 2>&1; then
  kustomize=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  kustomize=(kustomize build)
else
  kustomize=()
fi
mapfile -t kustomizations < <(find deploy/kubernetes -name 'kustomization.y*ml' | LC_ALL=C sort)
if [[ ${#kustomize[@]} -eq 0 ]]; then
  record skipped "kustomize build: neither kubectl nor kustomize installed"
else
  ok=1
  rendered=()
  for k in "${kustomizations[@]}"; do
    dir=$(dirname "$k")
    out="$work/$(basename "$dir").yaml"
    if "${kustomize[@]}" "$dir" >"$out"; then
      rendered+=("$out")
    else
      echo "FAIL ${kustomize[*]} $dir"
      ok=0
    fi
  done
  if [[ $ok -eq 1 ]] && validate "${rendered[@]}"; then
    record ok "kustomize build (${kustomize[*]}): ${#kustomizations[@]} kustomizations," \
      "$(count_resources "${rendered[@]}") resources, schema-valid"
  else
    record FAILED "kustomize build: see above"
  fi
fi

# --- Dockerfile ------------------------------------------------------------------------------
echo "== hadolint deploy/Dockerfile"
# --failure-threshold style: every finding fails, down to style rules.
if "$VENV/bin/hadolint" --no-color --failure-threshold style deploy/Dockerfile; then
  record ok "hadolint $hadolint_version: deploy/Dockerfile clean"
else
  record FAILED "hadolint: see findings above"
fi

# --- cross-file consistency ------------------------------------------------------------------
echo "== consistency (deploy/consistency.py)"
bin=${PARTNER_GATEWAY_BIN:-}
if [[ -z $bin ]]; then
  for candidate in target/release/partner-gateway target/debug/partner-gateway; do
    if [[ -x $candidate ]]; then
      bin=$candidate
      break
    fi
  done
fi
bin_args=()
if [[ -n $bin ]]; then
  bin=$(realpath "$bin")
  echo "check-config with $bin"
  bin_args=(--bin "$bin")
fi
if out=$("$VENV/bin/python" deploy/consistency.py "${bin_args[@]}" 2>&1); then
  rc=0
else
  rc=$?
fi
echo "$out"
line=$(tail -n 1 <<<"$out")
if [[ -n $bin ]]; then
  line+=" (check-config with $bin)"
else
  line+=" (check-config skipped: no binary built)"
fi
if [[ $rc -eq 0 ]]; then
  record ok "$line"
else
  record FAILED "${line:-consistency.py crashed}"
fi

# --- systemd ---------------------------------------------------------------------------------
echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart= is executable: point it at a binary that exists here.
  exe=${bin:-$(command -v true)}
  sed "s#/usr/local/bin/partner-gateway #$exe #" deploy/systemd/partner-gateway.service \
    >"$work/partner-gateway.service"
  if out=$(cd "$work" && systemd-analyze verify ./partner-gateway.service 2>&1) && [[ -z $out ]]; then
    record ok "systemd-analyze verify: deploy/systemd/partner-gateway.service"
  else
    echo "$out"
    record FAILED "systemd-analyze verify: see above"
  fi
else
  record skipped "systemd-analyze verify: systemd-analyze not installed"
fi

# --- summary ---------------------------------------------------------------------------------
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "deploy/check.sh: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
