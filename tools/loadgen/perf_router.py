#!/usr/bin/env python3
"""Compares oscgate's tcposcrouter front door with the Python tcposcrouter package (0.2.0).

For N = 2, 10, 100 users (one TCP connection each, one group, user0 sends) it runs
`oscgate-load router` against each router, a fresh router process per run (so CPU and peak
RSS are that run's; all on 127.0.0.1, kernel-chosen ports):

  python  the package, through tcposcrouter_loopback.py (binds loopback instead of 0.0.0.0;
          logs as the package's own command does: INFO, one line per routed message, to a
          file in a temporary directory)
  mio     `oscgate run --driver mio` with only [router] enabled
  uring   `oscgate run --driver uring` with only [router] enabled

Three kinds of run, each `--runs` times (median, min-max):

  max     --rate 0: the sender writes as fast as the router reads. The package reads in
          Python, so its socket buffers fill and the sender blocks; it is given
          --py-duration s, and whatever still sits in its buffers and unbounded queues when
          the drain gives up (3 s) counts as lost. oscgate reads faster than it can fan out
          and drops the oldest queued frames of readers it cannot serve (its slow-reader
          policy), so its `lost` at this rate is that policy at work.
  paced   the same load for every router: --paced-fraction (0.5) of the message rate the
          package reached in its `max` runs at that N, i.e. a rate it sustains; the
          latency comparison.
  target  oscgate only, N = 100 (skipped if 100 is not in --users): --target deliveries/s
          (1 010 000) through 99 receivers, the issue's bar (>= 1 M/s, no loss or reordering).

The package is installed on first use into tools/loadgen/.venv-tcposcrouter with pip
(`tcposcrouter==0.2.0 python-osc sliplib==0.6.2`). Standard library only. The machine's load
average is printed first: on a shared machine, compare only within one run series.

    tools/loadgen/perf_router.py [--oscgate target/release/oscgate]
        [--loadgen target/release/oscgate-load] [--routers python,mio,uring]
        [--users 2,10,100] [--kinds max,paced,target] [--runs 3] [--duration 3]
        [--recv-threads 1] [--py-log-level info|warning] [--json out.json]
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(HERE, ".venv-tcposcrouter")
PACKAGES = ["tcposcrouter==0.2.0", "python-osc", "sliplib==0.6.2"]
LAUNCHER = os.path.join(HERE, "tcposcrouter_loopback.py")


def venv_python(venv):
    """The venv's interpreter, creating the venv and installing the package if needed."""
    py = os.path.join(venv, "bin", "python")
    probe = [py, "-c", "import importlib.metadata as m, tcposcrouter.router; "
             "print(m.version('tcposcrouter'))"]
    if os.path.exists(py):
        out = subprocess.run(probe, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == "0.2.0":
            return py
    if not os.path.exists(py):
        print(f"creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    print(f"installing {' '.join(PACKAGES)} into {venv}", file=sys.stderr)
    pip = subprocess.run([py, "-m", "pip", "install", "--quiet"] + PACKAGES)
    if pip.returncode != 0:
        raise SystemExit(f"pip could not install {' '.join(PACKAGES)} into {venv}")
    out = subprocess.run(probe, capture_output=True, text=True)
    if out.returncode != 0 or out.stdout.strip() != "0.2.0":
        raise SystemExit(f"tcposcrouter 0.2.0 is not importable in {venv}:\n{out.stderr}")
    return py


class Router:
    """One router process on loopback: `pid`, `addr` (the length-prefixed port)."""

    def __init__(self, kind, a, tmp):
        self.kind = kind
        self.tmp = tempfile.mkdtemp(dir=tmp)
        if kind == "python":
            cmd = [a.py, LAUNCHER, "--port", "0", "--slip-port", "0",
                   "--log-dir", self.tmp, "--log-level", a.py_log_level]
            ready = re.compile(r"tcposcrouter: listening len32=(\S+) slip=(\S+)")
        else:
            cfg = os.path.join(self.tmp, "router.toml")
            with open(cfg, "w") as f:
                f.write(
                    "[router]\n"
                    'listen = "127.0.0.1:0"\n'
                    'listen_slip = "127.0.0.1:0"\n'
                    # Only the router is measured; keep the rest from binding ports.
                    "[messenger]\nenabled = false\n[oschat]\nenabled = false\n"
                    "[http]\nenabled = false\n"
                )
            cmd = [a.oscgate, "run", "--config", cfg, "--driver", kind]
            ready = re.compile(r"oscgate: router on (\S+) \(len32\) and (\S+) \(slip\)")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        self.pid = self.p.pid
        self.addr = None
        deadline = time.time() + 15
        while time.time() < deadline:
            line = self.p.stdout.readline()
            m = ready.search(line)
            if m:
                self.addr = m.group(2) if a.framing == "slip" else m.group(1)
            if self.addr and (kind == "python" or line.startswith("oscgate: running")):
                return
            if not line and self.p.poll() is not None:
                break
        self.stop()
        raise SystemExit(f"{' '.join(cmd)} did not start (exit {self.p.poll()})")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def one_run(a, kind, users, rate, duration, tmp):
    r = Router(kind, a, tmp)
    try:
        cmd = [a.loadgen, "router", "--quiet", "--json", "--users", users, "--senders", 1,
               "--rate", rate, "--size", a.size, "--duration", duration,
               "--router", r.addr, "--framing", a.framing, "--target-pid", r.pid,
               "--recv-threads", a.recv_threads]
        cmd = [str(c) for c in cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
        return json.loads(out.stdout)
    finally:
        r.stop()


def spread(xs):
    return [statistics.median(xs), min(xs), max(xs)]


def row_of(kind, router, users, rate, reports):
    tp = [r.get("target_process") or {} for r in reports]
    dlv = [r["delivered"] for r in reports]
    cpu = [t.get("cpu_s", float("nan")) for t in tp]
    return {
        "kind": kind,
        "router": router,
        "users": users,
        "rate": rate,
        "runs": len(reports),
        "delivered_per_s": spread([r["delivered_per_s"] for r in reports]),
        "p50_us": spread([r["latency_us"]["p50"] for r in reports]),
        "p99_us": spread([r["latency_us"]["p99"] for r in reports]),
        "lost_pct": spread([100.0 * r["lost"] / max(1, r["expected"]) for r in reports]),
        "lost": sum(r["lost"] for r in reports),
        "duplicated": sum(r["duplicated"] for r in reports),
        "reordered": sum(r["reordered"] for r in reports),
        "malformed": sum(r["malformed"] for r in reports),
        "router_cpu_s": spread(cpu),
        "router_cpu_ns_per_delivery": spread([1e9 * c / max(1, d) for c, d in zip(cpu, dlv)]),
        "peak_rss_mib": max(t.get("peak_rss_kib", 0) for t in tp) / 1024,
        "closed": sum(r["control"]["closed"] for r in reports),
        "sender_errors": sum(len(r["sender_errors"]) for r in reports),
    }


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def fmt_us(x):
    return f"{x / 1000:.1f} ms" if x >= 1000 else f"{x:.0f} us"


def table(rows):
    """Medians over the runs; lost % also its worst run; dup, reord and cut (connections the
    router closed during the run) summed over the runs; peak RSS the largest."""
    lines = [
        "| run | router | N | rate msg/s | delivered/s, median (min-max) | p50 / p99 | "
        "lost % (max) / dup / reord | cut | router CPU s | CPU ns/delivery | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        d, lo, hi = r["delivered_per_s"]
        rate = "max" if r["rate"] == 0 else str(r["rate"])
        lines.append(
            f"| {r['kind']} | {r['router']} | {r['users']} | {rate} "
            f"| {fmt_rate(d)} ({fmt_rate(lo)}-{fmt_rate(hi)}) "
            f"| {fmt_us(r['p50_us'][0])} / {fmt_us(r['p99_us'][0])} "
            f"| {r['lost_pct'][0]:.2f} ({r['lost_pct'][2]:.2f}) / {r['duplicated']} / "
            f"{r['reordered']} | {r['closed']} "
            f"| {r['router_cpu_s'][0]:.2f} | {r['router_cpu_ns_per_delivery'][0]:.0f} "
            f"| {r['peak_rss_mib']:.1f} MiB |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", default=os.path.join(ROOT, "target/release/oscgate"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/oscgate-load"))
    ap.add_argument("--routers", default="python,mio,uring")
    ap.add_argument("--users", default="2,10,100")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="send phase, s")
    ap.add_argument("--py-duration", type=float, default=2.0,
                    help="send phase of the package's --rate 0 runs, s")
    ap.add_argument("--paced-fraction", type=float, default=0.5)
    ap.add_argument("--paced-rate", type=int,
                    help="messages/s of the paced runs when the package is not measured")
    ap.add_argument("--target", type=int, default=1_010_000,
                    help="deliveries/s of the oscgate target runs at N = 100 (0 = skip)")
    ap.add_argument("--kinds", default="max,paced,target",
                    help="which kinds of run (paced needs max with python, or --paced-rate)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--framing", choices=["len32", "slip"], default="len32")
    ap.add_argument("--recv-threads", type=int, default=1)
    ap.add_argument("--py-log-level", choices=["info", "warning"], default="info")
    ap.add_argument("--venv", default=VENV)
    ap.add_argument("--json", help="also write the rows and every raw report here")
    a = ap.parse_args()

    routers = [r for r in a.routers.split(",") if r]
    for r in routers:
        if r not in ("python", "mio", "uring"):
            ap.error(f"--routers: unknown router {r!r} (python, mio, uring)")
    users = [int(n) for n in a.users.split(",") if n]
    kinds = [k for k in a.kinds.split(",") if k]
    for k in kinds:
        if k not in ("max", "paced", "target"):
            ap.error(f"--kinds: unknown kind {k!r} (max, paced, target)")
    for path, what in [(a.loadgen, "oscgate-load"), (a.oscgate, "oscgate")]:
        if what == "oscgate" and routers == ["python"]:
            continue
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path}: not found; build it with "
                             "`cargo build --release -p oscgate -p oscgate-load`")
    a.py = venv_python(a.venv) if "python" in routers else None

    load1, load5, _ = os.getloadavg()
    print(f"# {os.cpu_count()} CPUs, load average {load1:.2f} (1 min) {load5:.2f} (5 min) "
          "before the runs; the machine may be shared", flush=True)
    raw, rows = [], []
    tmp = tempfile.mkdtemp(prefix="perf-router-")

    def series(kind, router, n, rate, duration):
        reports = []
        for _ in range(a.runs):
            rep = one_run(a, router, n, rate, duration, tmp)
            raw.append({"kind": kind, "router": router, "users": n, "rate": rate,
                        "report": rep})
            reports.append(rep)
        row = row_of(kind, router, n, rate, reports)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row

    try:
        for n in users:
            sat = {}
            for router in routers if "max" in kinds else []:
                dur = a.py_duration if router == "python" else a.duration
                sat[router] = series("max", router, n, 0, dur)
            if "python" in sat:
                msg_rate = sat["python"]["delivered_per_s"][0] / (n - 1)
                paced = max(1, int(msg_rate * a.paced_fraction))
            else:
                paced = a.paced_rate
            if paced and "paced" in kinds:
                for router in routers:
                    series("paced", router, n, paced, a.duration)
        if a.target and 100 in users and "target" in kinds:
            rate = math.ceil(a.target / 99)
            for router in routers:
                if router != "python":
                    series("target", router, 100, rate, a.duration)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "raw": raw}, f, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
