"""Benchmark of the watcher and the alarm daemon on a simulated 90 x 100K sweep.

    python bench/watch_ingest.py [--root DIR] [--runs 90] [--steps 100000]

Measures, each in a fresh process:
1. cold ingest: a SweepWatcher with the default rules reads the whole sweep
   (every shard, scores, phases, alarms); wall and CPU seconds, peak RSS;
2. latency from a shard's rename to its alarm reaching a loopback webhook
   through ``grokwatch alerts`` (inotify, then ``--poll --interval S``);
3. CPU share of one core while the daemon idles on the sweep (both modes).

Targets: ingest <= 5 s, peak RSS <= 1 GB, latency <= 1 s with
inotify and <= interval + 1 s when polling, idle CPU <= 2 %.
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLD = r"""
import json, resource, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from grokwatch.alerts import AlarmSubscriber, AlertEngine, load_rules
from grokwatch.watch import SweepWatcher
t1 = time.perf_counter(); c1 = time.process_time()
events = []
alarms = AlarmSubscriber(AlertEngine(load_rules()), on_events=events.extend)
snap = SweepWatcher(sys.argv[1], subscribers=[alarms]).cycle()
t2 = time.perf_counter(); c2 = time.process_time()
rows = sum(len(v.scalars["step"]) for v in snap.runs.values())
print(json.dumps({"import_s": t1 - t0, "ingest_s": t2 - t1, "ingest_cpu_s": c2 - c1, "runs": len(snap.runs),
                  "rows": rows, "events": len(events),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SPIKE_RULES = """
[rules.bench_spike]
signal = "grad_norm"
comparison = ">"
threshold = 2.0
severity = "warning"
description = "benchmark: a one-step grad-norm spike"
"""


class Hook:
    """Loopback JSON webhook; records (arrival time, message)."""

    def __init__(self):
        hook = self
        self.got: list[tuple[float, str]] = []
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                try:
                    msg = json.loads(body).get("message", "")
                except ValueError:
                    msg = ""
                with hook.lock:
                    hook.got.append((now, msg))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def arrival(self, token: str) -> float | None:
        with self.lock:
            for t, msg in self.got:
                if token in msg:
                    return t
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def grokwatch(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grokwatch", *args], cwd=ROOT, capture_output=True, text=True, **kw)


def cold_ingest(sweep: Path, repeats: int) -> dict:
    results = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD, str(sweep)], cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"cold ingest: {r['runs']} runs, {r['rows']:,} rows, {r['events']} alarm events in {r['ingest_s']:.2f} s "
            f"(cpu {r['ingest_cpu_s']:.2f} s), peak RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    best = min(results, key=lambda r: r["ingest_s"])
    return {
        "cold_ingest_s": round(statistics.median(r["ingest_s"] for r in results), 3),
        "cold_ingest_best_s": round(best["ingest_s"], 3),
        "cold_ingest_cpu_s": round(statistics.median(r["ingest_cpu_s"] for r in results), 3),
        "cold_peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "runs": best["runs"],
        "rows": best["rows"],
        "alarm_events": best["events"],
    }


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


class Daemon:
    def __init__(self, sweep: Path, hook: Hook, rules: Path, *extra: str):
        self.sweep = sweep
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grokwatch",
                "alerts",
                str(sweep),
                "--notify",
                hook.url,
                "--rules",
                str(rules),
                "--stall-timeout",
                "1h",
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        hb = sweep / ".grokwatch" / "heartbeat.json"

        def ready():
            try:
                d = json.loads(hb.read_text())
            except (OSError, ValueError):
                return False
            return d.get("pid") == self.proc.pid and d.get("ready") is True

        if not _wait(ready, 120):
            self.stop()
            raise SystemExit("the alert daemon did not come up")

    def cpu(self) -> float:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def latency_samples(
    sweep: Path, hook: Hook, writer, n: int, start_step: int, episode0: int, spacing: float
) -> list[float]:
    """Write n shards with a one-step grad-norm spike; seconds from rename to webhook."""
    import numpy as np

    from grokwatch.store import columns_to_ipc

    out = []
    step = start_step
    shards = writer.run_dir / "shards"
    for i in range(n):
        steps = np.arange(step, step + 100)
        cols = {
            "step": steps,
            "train_loss": np.full(100, 0.01),
            "train_acc": np.ones(100),
            "val_acc": np.full(100, 0.02),
            "grad_norm": np.ones(100),
            "weight_norm": np.full(100, 30.0),
        }
        cols["grad_norm"][50] = 5.0
        final = shards / f"scalars-{int(steps[-1]):09d}.arrow"
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(columns_to_ipc(cols))
            fh.flush()
            os.fsync(fh.fileno())
        t0 = time.time()
        os.replace(tmp, final)
        token = f"{writer.run_dir.name}/bench_spike/{episode0 + i}/firing"
        if not _wait(lambda token=token: hook.arrival(token) is not None, 30):
            raise SystemExit(f"alarm {token} never arrived")
        out.append(hook.arrival(token) - t0)
        step += 100
        time.sleep(spacing)
    return out


def idle_cpu(daemon: Daemon, seconds: float) -> float:
    time.sleep(1.0)
    c0, t0 = daemon.cpu(), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (daemon.cpu() - c0) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="reuse (or create) the simulated sweep under ROOT/sim")
    ap.add_argument("--runs", type=int, default=90)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3, help="cold-ingest repetitions (median reported)")
    ap.add_argument("--samples", type=int, default=8, help="latency samples per mode")
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement per mode")
    args = ap.parse_args()

    from grokwatch.sim.simulate import simulate_sweep
    from grokwatch.store import RunWriter, list_runs

    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="grokwatch-bench-")
        root = Path(tmp.name)
    sweep = root / "sim"
    if len(list_runs(sweep)) != args.runs:
        t = time.perf_counter()
        print(f"simulating {args.runs} runs x {args.steps:,} steps in {sweep} ...", flush=True)
        simulate_sweep(root, "sim", runs=args.runs, steps=args.steps, seed=0)
        print(f"  written in {time.perf_counter() - t:.0f} s", flush=True)
    figures: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}}
    figures.update(cold_ingest(sweep, args.repeats))

    # The daemon: first journal the sweep's history (no channel), so what follows measures new alarms only.
    import shutil

    shutil.rmtree(sweep / ".grokwatch", ignore_errors=True)
    shutil.rmtree(sweep / "bench-latency", ignore_errors=True)
    rules = root / "bench_rules.toml"
    rules.write_text(SPIKE_RULES)
    writer = RunWriter(
        sweep / "bench-latency", {"seed": 0, "weight_decay": 1.0, "total_steps": 10**6}, heartbeat_seconds=3600
    ).open()
    once = grokwatch("alerts", str(sweep), "--once", "--rules", str(rules), "--stall-timeout", "1h")
    if once.returncode:
        raise SystemExit(once.stderr)
    hook = Hook()
    try:
        step, episode = 1, 1
        for mode, extra in (("inotify", ()), ("poll", ("--poll", "--interval", str(args.poll_interval)))):
            d = Daemon(sweep, hook, rules, *extra)
            try:
                lat = latency_samples(sweep, hook, writer, args.samples, step, episode, spacing=2.1)
                step += 100 * args.samples
                episode += args.samples
                cpu = idle_cpu(d, args.idle)
            finally:
                d.stop()
            key = f"latency_{mode}_s"
            figures[key] = {"median": round(statistics.median(lat), 3), "max": round(max(lat), 3), "n": len(lat)}
            figures[f"idle_cpu_{mode}_pct"] = round(cpu, 2)
            print(
                f"{mode}: rename -> webhook median {statistics.median(lat):.3f} s, max {max(lat):.3f} s "
                f"(n={len(lat)}); idle CPU {cpu:.2f} % of one core",
                flush=True,
            )
        figures["poll_interval_s"] = args.poll_interval
        deliveries = [m for _, m in hook.got]
        ids = [i for m in deliveries for i in re.findall(r"id=(\S+)", m)]
        figures["duplicate_deliveries"] = len(ids) - len(set(ids))
    finally:
        hook.close()
        writer.close("completed")
        shutil.rmtree(sweep / "bench-latency", ignore_errors=True)
        shutil.rmtree(sweep / ".grokwatch", ignore_errors=True)
        if tmp is not None:
            tmp.cleanup()
    figures["targets"] = {
        "cold_ingest_s<=5": figures["cold_ingest_s"] <= 5.0,
        "peak_rss_mb<=1024": figures["cold_peak_rss_mb"] <= 1024,
        "latency_inotify_s<=1": figures["latency_inotify_s"]["max"] <= 1.0,
        "latency_poll_s<=interval+1": figures["latency_poll_s"]["max"] <= args.poll_interval + 1.0,
        "idle_cpu_pct<=2": max(figures["idle_cpu_inotify_pct"], figures["idle_cpu_poll_pct"]) <= 2.0,
    }
    figures["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
