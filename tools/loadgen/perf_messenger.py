#!/usr/bin/env python3
"""Measures the Messenger gateway with oscgate-load and prints the README's performance table.

For each driver (mio, uring) it starts `oscgate run` on loopback and, for N = 10, 100, 500 UDP
patrons (and 200, the target's size), runs `oscgate-load messenger --compare` (gateway, kernel baseline, naive forwarder, one
after the other in the same run) `--runs` times at full rate; then one run at 10 % of the
gateway's saturation message rate for the latency column, with the kernel baseline at the
same rate beside it. TCP: 100 patrons, gateway only (the
references replicate to UDP receivers only), same two kinds of run. Medians, with min-max.

Only loopback is used. Standard library only.

    tools/loadgen/perf_messenger.py [--oscgate target/release/oscgate]
        [--loadgen target/release/oscgate-load] [--runs 3] [--duration 5] [--json out.json]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(loadgen, args):
    cmd = [loadgen, "messenger", "--quiet", "--json"] + [str(a) for a in args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def start_gateway(oscgate, driver, port):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(
        "[messenger]\n"
        'interface = "127.0.0.1"\n'
        f'listen = "127.0.0.1:{port}"\n'
        'group = "239.254.0.1:3090"\n'
        "ttl = 0\n"
        "max_patrons = 1000\n"
        # Not measured here; keep them from binding ports.
        "[router]\nenabled = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n"
    )
    cfg.close()
    p = subprocess.Popen(
        [oscgate, "run", "--config", cfg.name, "--driver", driver],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("oscgate: running"):
            return p, cfg.name
        if not line and p.poll() is not None:
            break
    p.kill()
    raise SystemExit(f"oscgate run --driver {driver} did not start")


def stop_gateway(p, cfg):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
    os.unlink(cfg)


def spread(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt_k(x):
    return f"{x / 1000:.0f} k"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oscgate", default=os.path.join(ROOT, "target/release/oscgate"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/oscgate-load"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--drivers", default="mio,uring")
    ap.add_argument("--json", help="also write every raw report here")
    a = ap.parse_args()

    port = 9030 + 100 + os.getpid() % 500
    gw = f"127.0.0.1:{port}"
    common = ["--gateway", gw, "--duration", a.duration]
    raw = []
    rows = []
    for driver in a.drivers.split(","):
        p, cfg = start_gateway(a.oscgate, driver, port)
        try:
            common_pid = common + ["--gateway-pid", p.pid]
            for transport, n in [("udp", 10), ("udp", 100), ("udp", 200), ("udp", 500), ("tcp", 100)]:
                base = common_pid + ["--patrons", n, "--transport", transport]
                gw_rate, base_rate, naive_rate, rss = [], [], [], []
                lost_pct = []
                for _ in range(a.runs):
                    if transport == "udp":
                        r = load(a.loadgen, base + ["--compare"])
                        raw.append({"driver": driver, "kind": "compare", "report": r})
                        by = {run["mode"]: run for run in r["runs"]}
                        g = by["gateway"]
                        base_rate.append(by["baseline"]["delivered_per_s"])
                        naive_rate.append(by["naive"]["delivered_per_s"])
                    else:
                        g = load(a.loadgen, base)
                        raw.append({"driver": driver, "kind": "gateway", "report": g})
                    gw_rate.append(g["delivered_per_s"])
                    rss.append(g["gateway_process"]["peak_rss_kib"] / 1024)
                # Latency at 10 % of the saturation message rate.
                msg_rate = max(1, int(statistics.median(gw_rate) / n * 0.1))
                lat = load(a.loadgen, base + ["--rate", msg_rate])
                raw.append({"driver": driver, "kind": "latency", "report": lat})
                lost_pct = 100.0 * lat["lost"] / max(1, lat["expected"])
                # The same rate through the kernel baseline: what the host adds on its own.
                ref_p99 = None
                if transport == "udp":
                    ref = load(a.loadgen, base + ["--baseline", "--rate", msg_rate])
                    raw.append({"driver": driver, "kind": "latency-baseline", "report": ref})
                    ref_p99 = ref["latency_us"]["p99"]
                row = {
                    "driver": driver,
                    "transport": transport,
                    "patrons": n,
                    "delivered_per_s": spread(gw_rate),
                    "baseline_per_s": spread(base_rate) if base_rate else None,
                    "naive_per_s": spread(naive_rate) if naive_rate else None,
                    "ratio_baseline": spread([g / b for g, b in zip(gw_rate, base_rate)])
                    if base_rate
                    else None,
                    "ratio_naive": spread([g / v for g, v in zip(gw_rate, naive_rate)])
                    if naive_rate
                    else None,
                    "latency_rate": msg_rate,
                    "p50_us": lat["latency_us"]["p50"],
                    "p99_us": lat["latency_us"]["p99"],
                    "baseline_p99_us": ref_p99,
                    "latency_lost_pct": lost_pct,
                    "latency_dup": lat["duplicated"],
                    "latency_reordered": lat["reordered"],
                    "rss_mib": max(rss),
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            stop_gateway(p, cfg)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "raw": raw}, f, indent=1)

    print(
        "| driver | patrons | delivered/s (median, min-max) | / baseline | / naive "
        "| p99 at 10 % (p50) | baseline p99 | lost / dup / reordered at 10 % | RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        d, lo, hi = r["delivered_per_s"]
        ref_p99 = f"{r['baseline_p99_us'] / 1000:.2f} ms" if r["baseline_p99_us"] else "-"
        ratio = lambda k: (  # noqa: E731
            f"{r[k][0]:.2f} ({r[k][1]:.2f}-{r[k][2]:.2f})" if r[k] else "-"
        )
        print(
            f"| {r['driver']} | {r['patrons']} {r['transport'].upper()} "
            f"| {fmt_k(d)} ({fmt_k(lo)}-{fmt_k(hi)}) | {ratio('ratio_baseline')} "
            f"| {ratio('ratio_naive')} "
            f"| {r['p99_us'] / 1000:.2f} ms ({r['p50_us'] / 1000:.2f} ms) at {r['latency_rate']} msg/s "
            f"| {ref_p99} "
            f"| {r['latency_lost_pct']:.2f} % / {r['latency_dup']} / {r['latency_reordered']} "
            f"| {r['rss_mib']:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
