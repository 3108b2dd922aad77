#!/usr/bin/env python3
"""Cross-file checks for deploy/ that a schema validator cannot do.

Run by deploy/check.sh inside its virtualenv (needs PyYAML and Python 3.11+ for tomllib):

    python deploy/consistency.py [--bin PATH/TO/partner-gateway]

It rebuilds each deployment's *effective* gateway configuration the way the binary does
(compiled defaults = config/default.toml -> --config file -> PARTNER_GATEWAY__* environment,
where the environment is the image's ENV from deploy/Dockerfile plus the container's env) and
checks what has to agree with it:

  * probes hit the admin port with the right paths, and the admin port binds the Pod IP;
  * a sidecar's front is loopback-only, a central gateway's front is reachable by its Service;
  * no Service routes to the admin port (it serves cache purges); a NetworkPolicy selects each
    gateway Pod and admits the admin port only from named sources;
  * admin.token comes from a Secret (env valueFrom.secretKeyRef), never from a ConfigMap, a
    literal env value or a Secret manifest in git;
  * memory request/limit (or systemd MemoryMax=) >= cache.max_bytes x 1.4 + 64 MiB;
  * the termination budget (terminationGracePeriodSeconds / TimeoutStopSec) covers the
    preStop sleep + server.shutdown_grace + 5 s;
  * the restricted securityContext, PDB/HPA targets, kustomization resource lists, the
    systemd unit's hardening directives.

With --bin, each effective configuration is also fed to `partner-gateway check-config`, which
rejects unknown keys and bad values exactly as start-up would, and its printed result is
compared with the values computed here.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
MIB = 1024 * 1024
ENV_PREFIX = "PARTNER_GATEWAY__"
# Resource sizing rule used throughout deploy/ (see deploy/README.md).
OVERHEAD_FACTOR = 1.4
BASE_BYTES = 64 * MIB
# Slack between the end of shutdown_grace and SIGKILL.
STOP_MARGIN_SECONDS = 5


def required_memory(max_bytes: int) -> int:
    return int(max_bytes * OVERHEAD_FACTOR + BASE_BYTES)


class Report:
    def __init__(self) -> None:
        self.checks = 0
        self.failures: list[str] = []

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.failures.append(f"{where}: {message}")
        return ok


# --- parsing helpers ------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60,
    "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400, "days": 86400,
}


def parse_duration(text: str) -> float:
    """The subset of humantime used in configs: "30s", "1m 30s", "250ms"."""
    tokens = re.findall(r"(\d+)\s*([a-z]+)", text.strip().lower())
    if not tokens or re.sub(r"[\d\sa-z]", "", text.lower()):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in tokens)


def parse_k8s_quantity(text: str | int) -> int:
    """Kubernetes memory quantity ("448Mi", "1Gi", "500M", 1048576) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([EPTGMK]i?|k)?", str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = float(m.group(1)), m.group(2) or ""
    powers = {"K": 1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
    base = 1024 if suffix.endswith("i") else 1000
    return int(number * base ** powers[suffix[0]]) if suffix else int(number)


def parse_systemd_size(text: str) -> int:
    """systemd sizes: K/M/G/T are powers of 1024."""
    m = re.fullmatch(r"(\d+)([KMGT]?)", text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")


def split_listen(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_layer(env: dict[str, str]) -> dict:
    """PARTNER_GATEWAY__SECTION__KEY=value -> {section: {key: value}} (values stay strings)."""
    layer: dict = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
            layer.setdefault(section, {})[key] = value
    return layer


def dockerfile_env() -> dict[str, str]:
    """KEY=VALUE pairs of the ENV instructions in deploy/Dockerfile."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    env: dict[str, str] = {}
    for line in joined.splitlines():
        if re.match(r"^\s*ENV\s", line):
            for token in shlex.split(line.split(None, 1)[1]):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def dockerfile_user() -> str | None:
    users = re.findall(r"^\s*USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    return users[-1] if users else None


DEFAULTS = tomllib.loads((ROOT / "config" / "default.toml").read_text())


def effective(file_layer: dict, env: dict[str, str]) -> dict:
    return deep_merge(deep_merge(DEFAULTS, file_layer), env_layer(env))


def run_check_config(binary: str | None, toml_text: str, env: dict[str, str],
                     where: str, expected: dict, report: Report) -> str:
    """Runs `partner-gateway check-config` on the config; compares key results."""
    if not binary:
        return "skipped"
    with tempfile.TemporaryDirectory(prefix="pgw-check-") as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(toml_text)
        # Only this deployment's variables, none of the caller's PARTNER_GATEWAY__*; run in an
        # empty directory so no ./config/default.toml is picked up.
        proc_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        proc_env.update(env)
        proc = subprocess.run([binary, "check-config", "--config", str(path)], cwd=tmp,
                              env=proc_env, capture_output=True, text=True, timeout=30)
    if not report.check(proc.returncode == 0, where,
                        f"partner-gateway check-config rejected it: {proc.stderr.strip()}"):
        return "failed"
    printed = tomllib.loads(proc.stdout)
    for dotted in ("server.listen", "admin.listen", "cache.max_bytes", "server.shutdown_grace"):
        section, key = dotted.split(".")
        got, want = printed[section][key], expected[section][key]
        if dotted == "server.shutdown_grace":
            got, want = parse_duration(str(got)), parse_duration(str(want))
        report.check(str(got) == str(want), where,
                     f"check-config says {dotted} = {got!r}, deploy/ assumes {want!r}")
    return "ok"


# --- Kubernetes -----------------------------------------------------------------------------

SIDECAR_FRONT_HOSTS = {"127.0.0.1", "::1"}
ALL_INTERFACES = {"0.0.0.0", "::"}


def load_docs(directory: Path) -> tuple[list[tuple[Path, dict]], Path | None]:
    docs, kustomization = [], None
    for path in sorted(directory.glob("*.y*ml")):
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            kustomization = path
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs, kustomization


def resolve_port(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_security(container: dict, pod_sc: dict, where: str, report: Report) -> None:
    sc = container.get("securityContext", {})
    report.check(bool(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))), where,
                 "runAsNonRoot must be true")
    report.check(sc.get("allowPrivilegeEscalation") is False, where,
                 "allowPrivilegeEscalation must be false")
    report.check(sc.get("readOnlyRootFilesystem") is True, where,
                 "readOnlyRootFilesystem must be true")
    report.check("ALL" in sc.get("capabilities", {}).get("drop", []), where,
                 "capabilities.drop must contain ALL")
    seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    report.check(seccomp.get("type") == "RuntimeDefault", where,
                 "seccompProfile.type must be RuntimeDefault")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    image_user = dockerfile_user()
    if uid is not None and image_user:
        report.check(str(uid) == image_user.split(":")[0], where,
                     f"runAsUser {uid} differs from the image's USER {image_user}")


def check_admin_token(container: dict, file_layer: dict, where: str, report: Report) -> None:
    """admin.token reaches the gateway from a Secret and from nowhere else."""
    variable = f"{ENV_PREFIX}ADMIN__TOKEN"
    entries = [e for e in container.get("env", []) if e["name"] == variable]
    report.check(len(entries) == 1 and "secretKeyRef" in entries[0].get("valueFrom", {}), where,
                 f"{variable} must be set once, from a Secret (valueFrom.secretKeyRef)")
    report.check(not file_layer.get("admin", {}).get("token"), where,
                 "admin.token must not be in the ConfigMap: use a Secret")
    # Fleet mode's Redis URL (it may hold a password) and partition secret: Secrets only too.
    for key in ("redis_url", "partition_secret"):
        variable = f"{ENV_PREFIX}FLEET__{key.upper()}"
        for entry in (e for e in container.get("env", []) if e["name"] == variable):
            report.check("secretKeyRef" in entry.get("valueFrom", {}), where,
                         f"{variable} must come from a Secret (valueFrom.secretKeyRef)")
        report.check(not file_layer.get("fleet", {}).get(key), where,
                     f"fleet.{key} must not be in the ConfigMap: use a Secret")


def rule_covers_port(rule: dict, container: dict, port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True  # no ports: every port
    return any("port" not in p or resolve_port(container, p["port"]) == port for p in ports)


def check_network_policy(pod: dict, container: dict, admin_port: int, policies: list,
                         where: str, report: Report) -> None:
    """Some NetworkPolicy selects the Pod, and none admits the admin port from everywhere."""
    labels = pod.get("metadata", {}).get("labels", {})
    selecting = [(w, d) for w, d in policies
                 if all(labels.get(k) == v for k, v in
                        d["spec"].get("podSelector", {}).get("matchLabels", {}).items())
                 and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])]
    report.check(bool(selecting), where,
                 "no NetworkPolicy selects this Pod: its admin port (purges) is open to all")
    for policy_where, policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if rule_covers_port(rule, container, admin_port):
                report.check(bool(rule.get("from")), policy_where,
                             f"an ingress rule admits the admin port {admin_port} from anywhere")


def check_gateway_container(deploy: dict, container: dict, configmaps: dict, services: list,
                            policies: list, sidecar: bool, binary: str | None, where: str,
                            report: Report) -> str:
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    args = container.get("command", []) + container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    if not report.check(config_path is not None, where, "no --config argument"):
        return "failed"

    # --config file -> volumeMount -> ConfigMap key.
    toml_text = None
    mount_dir, file_name = os.path.split(config_path)
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") != mount_dir:
            continue
        volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
        cm_ref = volume.get("configMap")
        if not cm_ref:
            continue
        key = file_name
        for item in cm_ref.get("items", []):
            if item["path"] == file_name:
                key = item["key"]
        toml_text = configmaps.get(cm_ref["name"], {}).get(key)
    if not report.check(toml_text is not None, where,
                        f"{config_path} is not backed by a ConfigMap key in this directory"):
        return "failed"

    file_layer = tomllib.loads(toml_text)
    env = dockerfile_env()
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    for section, key in (("server", "listen"), ("admin", "listen")):
        variable = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        report.check(not (key in file_layer.get(section, {}) and variable in env), where,
                     f"{section}.{key} in the ConfigMap is dead: {variable} overrides it")
    cfg = effective(file_layer, env)
    check_admin_token(container, file_layer, where, report)

    front_host, front_port = split_listen(cfg["server"]["listen"])
    admin_host, admin_port = split_listen(cfg["admin"]["listen"])
    report.check(front_port != admin_port, where, "front and admin ports must differ")
    report.check(admin_host in ALL_INTERFACES, where,
                 f"admin.listen {cfg['admin']['listen']} is not reachable by kubelet probes")
    if sidecar:
        report.check(front_host in SIDECAR_FRONT_HOSTS, where,
                     f"sidecar front must be loopback-only, is {cfg['server']['listen']}")
    else:
        report.check(front_host in ALL_INTERFACES, where,
                     f"gateway front {cfg['server']['listen']} is unreachable by its Service")
        http = resolve_port(container, "http")
        report.check(http == front_port, where,
                     f"containerPort 'http' ({http}) differs from server.listen ({front_port})")

    # Probes.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", None)):
        get = container.get(probe, {}).get("httpGet")
        if probe != "startupProbe":
            report.check(get is not None, where, f"{probe} must be an httpGet probe")
        if not get:
            continue
        report.check(resolve_port(container, get["port"]) == admin_port, where,
                     f"{probe} port {get['port']} is not the admin port {admin_port}")
        report.check(get["path"] == path if path else get["path"] in ("/healthz", "/readyz"),
                     where, f"{probe} path {get['path']} should be {path}")

    annotations = pod.get("metadata", {}).get("annotations", {})
    if "prometheus.io/port" in annotations:
        report.check(int(annotations["prometheus.io/port"]) == admin_port, where,
                     "prometheus.io/port is not the admin port")

    # Memory sizing.
    need = required_memory(int(cfg["cache"]["max_bytes"]))
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        value = resources.get(kind, {}).get("memory")
        if report.check(value is not None, where, f"resources.{kind}.memory missing"):
            have = parse_k8s_quantity(value)
            report.check(have >= need, where,
                         f"resources.{kind}.memory {value} < cache.max_bytes x "
                         f"{OVERHEAD_FACTOR} + 64 MiB = {need / MIB:.1f} MiB")

    # Shutdown budget.
    grace = parse_duration(str(cfg["server"]["shutdown_grace"]))
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    sleep = 0.0
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        if os.path.basename(command[0]) == "sleep":
            sleep = float(command[1])
    elif "sleep" in pre_stop:
        sleep = float(pre_stop["sleep"]["seconds"])
    if not sidecar:
        report.check(sleep > 0, where, "a preStop sleep lets endpoints drop the Pod first")
    budget = spec.get("terminationGracePeriodSeconds", 30)
    report.check(budget >= sleep + grace + STOP_MARGIN_SECONDS, where,
                 f"terminationGracePeriodSeconds {budget} < preStop {sleep:g}s + "
                 f"shutdown_grace {grace:g}s + {STOP_MARGIN_SECONDS}s")

    check_security(container, spec.get("securityContext", {}), where, report)
    check_network_policy(pod, container, admin_port, policies, where, report)

    # Services selecting this Pod must not route to the admin port.
    labels = pod.get("metadata", {}).get("labels", {})
    for svc_where, svc in services:
        selector = svc["spec"].get("selector") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for port in svc["spec"].get("ports", []):
            target = resolve_port(container, port.get("targetPort", port["port"]))
            report.check(target != admin_port, svc_where,
                         f"Service port {port['port']} exposes the admin port (cache purges)")
            if not sidecar:
                report.check(target == front_port, svc_where,
                             f"Service port {port['port']} does not reach the front port")

    return run_check_config(binary, toml_text, env, where, cfg, report)


def check_kubernetes_dir(directory: Path, binary: str | None, report: Report) -> list[str]:
    docs, kustomization = load_docs(directory)
    rel = directory.relative_to(ROOT)
    notes = []
    if kustomization:
        listed = set(yaml.safe_load(kustomization.read_text()).get("resources", []))
        present = {p.name for p in directory.glob("*.y*ml") if p != kustomization}
        report.check(listed == present, str(kustomization.relative_to(ROOT)),
                     f"resources {sorted(listed)} != files {sorted(present)}")

    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in docs
                  if d.get("kind") == "ConfigMap"}
    services = [(str(p.relative_to(ROOT)), d) for p, d in docs if d.get("kind") == "Service"]
    policies = [(str(p.relative_to(ROOT)), d) for p, d in docs
                if d.get("kind") == "NetworkPolicy"]
    for path, doc in docs:
        if doc.get("kind") == "Secret":
            report.check(not doc.get("data") and not doc.get("stringData"),
                         str(path.relative_to(ROOT)),
                         "a Secret with data in git: create it with kubectl instead")
    deployments = {d["metadata"]["name"]: (p, d) for p, d in docs
                   if d.get("kind") == "Deployment"}

    for name, (path, deploy) in deployments.items():
        spec = deploy["spec"]["template"]["spec"]
        containers = spec.get("containers", []) + spec.get("initContainers", [])
        gateways = [c for c in containers if c["name"] == "partner-gateway"]
        where = f"{path.relative_to(ROOT)} ({name})"
        if not report.check(len(gateways) == 1, where,
                            "expected exactly one container named partner-gateway"):
            continue
        gateway = gateways[0]
        sidecar = len(containers) > 1
        if gateway in spec.get("initContainers", []):
            report.check(gateway.get("restartPolicy") == "Always", where,
                         "a gateway in initContainers must be a native sidecar "
                         "(restartPolicy: Always)")
        result = check_gateway_container(deploy, gateway, configmaps, services, policies,
                                         sidecar, binary, where, report)
        notes.append(f"{rel}: check-config {result}")
        if not sidecar:
            report.check(deploy["spec"].get("replicas", 1) >= 2, where, "replicas must be >= 2")

    for path, doc in docs:
        where = str(path.relative_to(ROOT))
        if doc.get("kind") == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]["matchLabels"]
            report.check(any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                                 for k, v in selector.items())
                             for _, d in deployments.values()), where,
                         "selector matches no Deployment here")
        if doc.get("kind") == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            report.check(target["kind"] == "Deployment" and target["name"] in deployments,
                         where, f"scaleTargetRef {target['name']} is not a Deployment here")
            report.check(doc["spec"].get("minReplicas", 1) >= 2, where, "minReplicas < 2")
    return notes


# --- systemd --------------------------------------------------------------------------------

REQUIRED_UNIT_SETTINGS = {
    "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "", "KillSignal": "SIGTERM", "Restart": "on-failure",
}


def check_systemd(binary: str | None, report: Report) -> list[str]:
    unit_path = DEPLOY / "systemd" / "partner-gateway.service"
    where = str(unit_path.relative_to(ROOT))
    settings: dict[str, list[str]] = {}
    for line in unit_path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    for key, want in REQUIRED_UNIT_SETTINGS.items():
        report.check(settings.get(key, [None])[-1] == want, where, f"{key}= must be {want!r}")
    report.check("@system-service" in settings.get("SystemCallFilter", []), where,
                 "SystemCallFilter=@system-service missing")
    families = set(" ".join(settings.get("RestrictAddressFamilies", [])).split())
    report.check({"AF_INET", "AF_INET6"} <= families, where,
                 "RestrictAddressFamilies= must allow AF_INET AF_INET6")

    exec_start = shlex.split(settings["ExecStart"][-1])
    config_path = exec_start[exec_start.index("--config") + 1]
    report.check(config_path == "/etc/partner-gateway/config.toml", where,
                 f"ExecStart reads {config_path}, deploy/systemd/config.toml is installed as "
                 "/etc/partner-gateway/config.toml")
    toml_text = (DEPLOY / "systemd" / "config.toml").read_text()
    cfg = effective(tomllib.loads(toml_text), {})

    need = required_memory(int(cfg["cache"]["max_bytes"]))
    memory_max = settings.get("MemoryMax", [None])[-1]
    if report.check(memory_max is not None, where, "MemoryMax= missing"):
        report.check(parse_systemd_size(memory_max) >= need, where,
                     f"MemoryMax={memory_max} < cache.max_bytes x {OVERHEAD_FACTOR} + 64 MiB "
                     f"= {need / MIB:.1f} MiB")
    grace = parse_duration(str(cfg["server"]["shutdown_grace"]))
    stop_text = settings.get("TimeoutStopSec", ["90"])[-1]  # systemd's default is 90s
    stop = float(stop_text) if stop_text.isdigit() else parse_duration(stop_text)
    report.check(stop >= grace + STOP_MARGIN_SECONDS, where,
                 f"TimeoutStopSec ({stop:g}s) < shutdown_grace {grace:g}s + "
                 f"{STOP_MARGIN_SECONDS}s")
    result = run_check_config(binary, toml_text, {}, "deploy/systemd/config.toml", cfg, report)
    return [f"deploy/systemd: check-config {result}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="partner-gateway binary for check-config (optional)")
    args = parser.parse_args()
    if args.bin:
        args.bin = str(Path(args.bin).resolve())

    report = Report()
    notes = []
    for directory in sorted((DEPLOY / "kubernetes").iterdir()):
        if directory.is_dir():
            notes += check_kubernetes_dir(directory, args.bin, report)
    notes += check_systemd(args.bin, report)

    for note in notes:
        print(f"  {note}")
    for failure in report.failures:
        print(f"FAIL {failure}")
    print(f"consistency: {report.checks - len(report.failures)} passed, "
          f"{len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
