#!/usr/bin/env python3
"""Helper of benches/compare.sh (standard library only).

  ports N                                  N distinct free loopback TCP ports
  paths FILE N                             N order paths (deterministic GUIDs), one per line
  check ADDR PATH KIND [hit]               GET PATH: 200 + body of that order; with `hit`, a
                                           second GET must be a cache hit (KIND's header)
  warm ADDR PATHS_FILE KIND                every path answered with its order and a cache hit
                                           (a GET, and a second one when the first was no hit)
  record TSV ROUND TARGET CELL LOG WRK_OUT ORIGIN_DELTA CPU_TICKS CLK_TCK
                                           parse wrk's output, append one row to TSV
  table TSV OUT_MD HEADER_FILE             the Markdown report: header + table + notes

KIND says how a target tells a cache hit: gateway (X-Cache: HIT), nginx (X-Cache-Status: HIT),
varnish (X-Cache: HIT, set in vcl_deliver from obj.hits), none (no cache: static, forward).
"""

import http.client
import inspect
import json
import os
import re
import socket
import statistics
import sys

AUTH = {"Authorization": "Bearer bench"}
CUSTOMER = "0e5fc923-8e3c-4560-9100-ce7283c3e081"
HIT_HEADER = {"gateway": "X-Cache", "nginx": "X-Cache-Status", "varnish": "X-Cache", "none": None}


def die(message):
    print(f"compare_helper: {message}", file=sys.stderr)
    sys.exit(1)


def order_path(i):
    return f"/v1/customers/{CUSTOMER}/orders/5e2a1c3b-0000-4000-8000-{i:012x}"


def cmd_ports(n):
    sockets = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in sockets))
    for s in sockets:
        s.close()


def cmd_paths(file, n):
    with open(file, "w") as f:
        for i in range(1, int(n) + 1):
            f.write(order_path(i) + "\n")


class Client:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = None

    def get(self, path):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("GET", path, headers=AUTH)
                response = self.conn.getresponse()
                body = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response, body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def expect_order(addr, path, response, body):
    if response.status != 200:
        die(f"{addr}{path}: status {response.status}, expected 200: {body[:200]!r}")
    parts = path.split("/")
    customer, order = parts[3], parts[5]
    try:
        doc = json.loads(body)
    except ValueError:
        die(f"{addr}{path}: body is not JSON: {body[:200]!r}")
    if doc.get("id") != order or doc.get("referenceCustomerId") != customer:
        die(f"{addr}{path}: body is order {doc.get('id')!r} of {doc.get('referenceCustomerId')!r},"
            f" expected {order} of {customer}")
    etag = (doc.get("attributes") or {}).get("etag")
    if not isinstance(etag, str) or not etag:
        die(f"{addr}{path}: attributes.etag missing")


def hit_of(kind, response):
    header = HIT_HEADER[kind]
    return (response.getheader(header) or "").strip().upper() if header else ""


def cmd_check(addr, path, kind, want_hit=""):
    client = Client(addr)
    response, body = client.get(path)
    expect_order(addr, path, response, body)
    first = hit_of(kind, response)
    if want_hit:
        response, body = client.get(path)
        expect_order(addr, path, response, body)
        second = hit_of(kind, response)
        if second != "HIT":
            die(f"{addr}{path}: second GET not a cache hit ({HIT_HEADER[kind]}: {second!r};"
                f" first {first!r})")
        print(f"ok {addr}{path}: {first or '-'} then {second}")
    else:
        print(f"ok {addr}{path}: {first or '-'}")


def cmd_warm(addr, paths_file, kind):
    client = Client(addr)
    paths = [line.strip() for line in open(paths_file) if line.strip()]
    filled = 0
    for path in paths:
        response, body = client.get(path)
        expect_order(addr, path, response, body)
        if hit_of(kind, response) != "HIT":
            filled += 1
            response, body = client.get(path)
            expect_order(addr, path, response, body)
            if hit_of(kind, response) != "HIT":
                die(f"{addr}{path}: no cache hit after warming"
                    f" ({HIT_HEADER[kind]}: {hit_of(kind, response)!r})")
    print(f"warm {addr}: {len(paths)} paths hit ({filled} filled now)")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def latency_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_wrk(text):
    out = {"requests": 0, "seconds": 0.0, "rps": 0.0, "p50": float("nan"),
           "p99": float("nan"), "non2xx": 0, "sockerr": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = latency_ms(m.group(2) + m.group(3)) / 1e3
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            out[key] = latency_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["sockerr"] = sum(int(g) for g in m.groups())
    return out


COLUMNS = ["round", "target", "cell", "log", "requests", "seconds", "rps", "p50_ms", "p99_ms",
           "non2xx", "sockerr", "origin_delta", "cpu_ticks", "clk_tck", "server_core_busy",
           "server_core_total", "client_core_busy", "client_core_total"]


def cmd_record(tsv, rnd, target, cell, log, wrk_out, origin_delta, cpu_ticks, clk_tck,
               server_core_busy, server_core_total, client_core_busy, client_core_total):
    w = parse_wrk(open(wrk_out).read())
    if w["requests"] == 0:
        die(f"{wrk_out}: wrk reported no requests:\n{open(wrk_out).read()}")
    new = not os.path.exists(tsv)
    with open(tsv, "a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        row = [rnd, target, cell, log, w["requests"], f"{w['seconds']:.3f}", f"{w['rps']:.1f}",
               f"{w['p50']:.4f}", f"{w['p99']:.4f}", w["non2xx"], w["sockerr"], origin_delta,
               cpu_ticks, clk_tck, server_core_busy, server_core_total, client_core_busy,
               client_core_total]
        f.write("\t".join(str(v) for v in row) + "\n")
    cpu_us = int(cpu_ticks) / int(clk_tck) * 1e6 / w["requests"]
    share = int(origin_delta) / w["requests"]
    server_busy = int(server_core_busy) / max(int(server_core_total), 1)
    server_own = int(cpu_ticks) / max(int(server_core_total), 1)
    client_busy = int(client_core_busy) / max(int(client_core_total), 1)
    print(f"  {target:8} {cell:7} log={log:3} {w['rps']:>10.0f} req/s  p50 {w['p50']:.2f} ms"
          f"  p99 {w['p99']:.2f} ms  origin {share:.3f}  cpu {cpu_us:.1f} µs/req"
          f"  server core {server_busy:.0%} ({server_own:.0%} server)"
          f"  client core {client_busy:.0%}"
          + (f"  non-2xx {w['non2xx']}" if w["non2xx"] else "")
          + (f"  socket errors {w['sockerr']}" if w["sockerr"] else ""))


CELL_NAMES = {"hit1": "hit, 1 key", "hitN": "hit, {keys} keys", "miss": "miss (unique paths)",
              "static": "static bytes"}
TARGET_ORDER = ["gateway", "nginx", "varnish", "static", "forward"]
TARGET_NAMES = {"gateway": "gateway", "nginx": "nginx proxy_cache", "varnish": "Varnish",
                "static": "static ceiling", "forward": "bare forward proxy"}
CELL_ORDER = ["hit1", "hitN", "miss", "static"]
NOISE = 0.10  # share of the server core used by others above which a row is flagged


def fmt_rps(v):
    return f"{v:,.0f}"


def fmt_ms(v):
    return "-" if v != v else (f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms")


def cmd_table(tsv, out_md, header_file):
    rows = []
    with open(tsv) as f:
        names = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(names, line.rstrip("\n").split("\t"))))
    keys = os.environ.get("KEYS", "1000")
    groups = {}
    for r in rows:
        groups.setdefault((r["target"], r["cell"], r["log"]), []).append(r)

    summary = {}
    for key, rs in groups.items():
        rps = [float(r["rps"]) for r in rs]
        requests = sum(int(r["requests"]) for r in rs)
        ticks = sum(int(r["cpu_ticks"]) for r in rs)
        clk = int(rs[0]["clk_tck"])
        summary[key] = {
            "median": statistics.median(rps), "min": min(rps), "max": max(rps), "n": len(rs),
            "p50": statistics.median(float(r["p50_ms"]) for r in rs),
            "p99": statistics.median(float(r["p99_ms"]) for r in rs),
            "origin_share": sum(int(r["origin_delta"]) for r in rs) / requests,
            "origin_delta": sum(int(r["origin_delta"]) for r in rs),
            "cpu_us": ticks / clk * 1e6 / requests,
            "errors": sum(int(r["non2xx"]) + int(r["sockerr"]) for r in rs),
            "server_busy": statistics.median(
                int(r["server_core_busy"]) / max(int(r["server_core_total"]), 1) for r in rs),
            "server_own": statistics.median(
                int(r["cpu_ticks"]) / max(int(r["server_core_total"]), 1) for r in rs),
            "client_busy": statistics.median(
                int(r["client_core_busy"]) / max(int(r["client_core_total"]), 1) for r in rs),
        }

    static = summary.get(("static", "static", "-"))
    lines = []
    lines.append("| target | cell | log | req/s median (min..max) | p50 | p99 | × static |"
                 " gateway/nginx | gateway/Varnish | reaching origin | server CPU µs/req |"
                 " server core busy (server) | client core busy |")
    lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
                 " ---: | ---: |")
    notes = []
    noisy = []

    def sort_key(key):
        target, cell, log = key
        return (CELL_ORDER.index(cell) if cell in CELL_ORDER else 9,
                TARGET_ORDER.index(target) if target in TARGET_ORDER else 9,
                {"on": 0, "off": 1}.get(log, 2))

    for key in sorted(summary, key=sort_key):
        target, cell, log = key
        s = summary[key]
        ratio_static = f"{s['median'] / static['median']:.2f}" if static else "-"
        gw_nginx = gw_varnish = ""
        if target == "gateway":
            other = summary.get(("nginx", cell, log))
            gw_nginx = f"{s['median'] / other['median']:.2f}" if other else "-"
            other = summary.get(("varnish", cell, "-"))
            gw_varnish = f"{s['median'] / other['median']:.2f}" if other else "-"
        rps = (f"{fmt_rps(s['median'])} ({fmt_rps(s['min'])}..{fmt_rps(s['max'])})"
               if s["n"] > 1 else fmt_rps(s["median"]))
        flag = ""
        if s["errors"]:
            flag = " ⚠"
            notes.append(f"⚠ {TARGET_NAMES.get(target, target)} {cell} log {log}:"
                         f" {s['errors']} non-2xx answers or socket errors (wrk)")
        foreign = s["server_busy"] - s["server_own"]
        if foreign > NOISE:
            flag += " ≈"
            noisy.append(f"{TARGET_NAMES.get(target, target)} {cell} log {log}"
                         f" ({foreign:.0%})")
        if cell in ("hit1", "hitN", "static") and s["origin_delta"] > 0:
            flag += " ✗"
            notes.append(f"✗ {TARGET_NAMES.get(target, target)} {cell} log {log}: the origin"
                         f" received {s['origin_delta']} requests during a hit cell")
        lines.append(
            f"| {TARGET_NAMES.get(target, target)} | {CELL_NAMES.get(cell, cell).format(keys=keys)}"
            f"{flag} | {log} | {rps} | {fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} | {ratio_static} |"
            f" {gw_nginx} | {gw_varnish} | {s['origin_share']:.3f} | {s['cpu_us']:.1f} |"
            f" {s['server_busy']:.0%} ({s['server_own']:.0%}) | {s['client_busy']:.0%} |")

    gw_fwd = []
    fwd = summary.get(("forward", "miss", "-"))
    for log in ("on", "off"):
        gw = summary.get(("gateway", "miss", log))
        if gw and fwd:
            gw_fwd.append(f"log {log}: {gw['median'] / fwd['median']:.2f} × the bare forward"
                          f" proxy's req/s, {gw['cpu_us'] / fwd['cpu_us']:.2f} × its CPU per"
                          " request")
    header = open(header_file).read().rstrip("\n")
    text = header + "\n\n" + "\n".join(lines) + "\n"
    if gw_fwd:
        text += "\nGateway miss path vs the bare forwarding proxy — " + "; ".join(gw_fwd) + ".\n"
    if noisy:
        notes.append(f"≈ other load took more than {NOISE:.0%} of the server core (CPU busy"
                     " minus the server's own time; loopback softirq work is part of it, a few %)"
                     " in the median run of: " + ", ".join(noisy)
                     + ". Treat these rows with care; server CPU µs/req is the least affected column.")
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    os.makedirs(os.path.dirname(out_md) or ".", exist_ok=True)
    with open(out_md, "w") as f:
        f.write(text)
    print(text)
    failed = any(n.startswith("✗") for n in notes)
    sys.exit(2 if failed else 0)


def main(argv):
    commands = {"ports": cmd_ports, "paths": cmd_paths, "check": cmd_check, "warm": cmd_warm,
                "record": cmd_record, "table": cmd_table}
    if len(argv) < 2 or argv[1] not in commands:
        die(__doc__)
    command = commands[argv[1]]
    try:
        inspect.signature(command).bind(*argv[2:])
    except TypeError as e:
        die(f"{argv[1]}: {e}\n{__doc__}")
    try:
        command(*argv[2:])
    except (OSError, http.client.HTTPException) as e:
        die(f"{argv[1]} {' '.join(argv[2:4])}: {e}")


if __name__ == "__main__":
    main(sys.argv)
