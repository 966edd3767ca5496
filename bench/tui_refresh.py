"""Dashboard refresh cost with a live sweep: 90 runs updating at once.

A ``grokwatch simulate --speed`` process writes the sweep into a temporary
directory (a separate process, as trainers are); this process runs the
dashboard exactly as ``grokwatch tui`` builds it (``make_app``, following the
sweep live: watcher, alarm engine and predictor in-process) on Textual's
headless driver at a fixed size, and measures:

- refresh: UI-thread time to apply a new model (table cells, status, grid,
  feed) plus the compositor pass that paints it (p50/p95; target p95 <= 50 ms),
  as wall time and as the UI thread's own CPU time (``refresh_cpu_*``: what
  the dashboard costs, without the waits a loaded machine adds);
- loop lag: how late a 20 ms timer on the UI loop fires (p95, max): anything
  else that blocks the UI thread shows up here;
- key to repaint: a key posted as the terminal driver does, until the first
  paint after its effect (sort, cursor, view switch, detail open/close;
  target <= 100 ms); plus detail curves: enter until the plots are painted;
- memory: resident set size at the end and peak (target <= 1 GB);
- the quiet window (``grokwatch.watch.quiet``: the watcher and the model feed
  step aside for 150 ms after a key press) is on for alternate rounds of the
  key plan and off for the others, so ``key_repaint_*_quiet_on`` and
  ``..._quiet_off`` are measured side by side under the same load;
  ``key_repaint_ms_*`` (all keys) is what a user gets with it on only for
  the ``on`` rounds: quote the ``_quiet_on`` figures for the dashboard as shipped;
- off-thread: model builds (feed thread) p50/p95.

The headless driver paints to nothing, so terminal write time (a few ms for
an 80x24 update over SSH) is not included.

    python bench/tui_refresh.py [--runs 90] [--steps 100000] [--speed 1000] [--seconds 60] [--full SWEEP]

With ``--full SWEEP`` (a finished sweep, e.g. ``grokwatch simulate ROOT
--runs 90 --steps 100000 --sweep full``), the dashboard is then opened on it
too: backfill time, resident memory with 90 x 100K steps held, and the time
to draw a 100K-step run's curves.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def ms(x: float | None) -> float | None:
    return None if x is None else round(1000 * x, 2)


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def bench(sweep: Path, seconds: float, size: tuple[int, int], key_every: float) -> dict:
    from textual import events
    from textual._compositor import Compositor

    # -- instrumentation: paint passes and model applications ------------------------
    from grokwatch.tui.app import GrokwatchApp, make_app
    from grokwatch.tui.config import TuiConfig
    from grokwatch.tui.screens.detail import DetailScreen

    # (end time, wall seconds, UI-thread CPU seconds)
    paints: list[tuple[float, float, float]] = []
    applied: list[tuple[float, float, float]] = []
    originals: list[tuple[type, str, object]] = []

    def instrument(cls, name, into):
        fn = getattr(cls, name)
        originals.append((cls, name, fn))

        def timed(self, *a, **kw):
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                return fn(self, *a, **kw)
            finally:
                t1 = time.perf_counter()
                into.append((t1, t1 - t0, time.thread_time() - c0))

        setattr(cls, name, timed)

    for name in ("render_update", "render_full_update", "render_partial_update"):
        instrument(Compositor, name, paints)
    instrument(GrokwatchApp, "on_model_ready", applied)
    series_set: list[float] = []  # when the detail screen handed new curves to its plots
    on_series = DetailScreen.on_series_ready
    originals.append((DetailScreen, "on_series_ready", on_series))

    def timed_series(self, msg):
        on_series(self, msg)
        if self.series is not None:
            series_set.append(time.perf_counter())

    DetailScreen.on_series_ready = timed_series

    app = make_app(sweep, TuiConfig(redraw=0.25, interval=1.0))

    # garbage-collector pauses (any thread; a full collection stops them all)
    import gc

    gc_pauses: list[tuple[int, float]] = []
    gc_start = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_start[0]))

    gc.callbacks.append(on_gc)
    lags: list[float] = []
    keys: list[dict] = []
    try:
        async with app.run_test(size=size):
            last = [time.perf_counter()]

            def probe():
                now = time.perf_counter()
                lags.append(max(0.0, now - last[0] - 0.02))
                last[0] = now

            app.set_interval(0.02, probe)
            t_end = time.monotonic() + seconds
            while app.model is None or not app.model.rows:
                await asyncio.sleep(0.05)
            plan = [
                ("s", lambda: app.dashboard.table.sort_key),
                ("j", lambda: app.dashboard.table.cursor_row),
                ("S", lambda: app.dashboard.table.reverse),
                ("k", lambda: app.dashboard.table.cursor_row),
                ("g", lambda: app.dashboard.view),
                ("r", lambda: app.dashboard.view),
                ("a", lambda: app.dashboard.view),
                ("r", lambda: app.dashboard.view),
                ("enter", lambda: type(app.screen).__name__),
                ("escape", lambda: type(app.screen).__name__),
            ]
            i = 0
            while time.monotonic() < t_end:
                await asyncio.sleep(key_every)
                key, state = plan[i % len(plan)]
                quiet_on = (i // len(plan)) % 2 == 0
                app.quiet.enabled = quiet_on
                i += 1
                before = state()
                c0 = time.thread_time()  # the app runs in this thread: UI CPU from key to paint
                t0 = time.perf_counter()
                ev = events.Key(key, "\r" if key == "enter" else ("\x1b" if key == "escape" else key))
                ev.set_sender(app)
                app._driver.send_message(ev)
                while state() == before and time.perf_counter() - t0 < 5:
                    await asyncio.sleep(0.001)
                t_state = time.perf_counter()
                while not any(p[0] > t_state for p in paints[-5:]) and time.perf_counter() - t0 < 5:
                    await asyncio.sleep(0.001)
                t_paint = next((p[0] for p in paints if p[0] > t_state), time.perf_counter())
                rec = {
                    "key": key,
                    "quiet": quiet_on,
                    "repaint_ms": round(1000 * (t_paint - t0), 2),
                    "cpu_ms": round(1000 * (time.thread_time() - c0), 2),
                }
                if key == "enter" and isinstance(app.screen, DetailScreen):
                    # until the first paint that starts after the curves were handed to the plots
                    # (polling for the series could miss a paint that followed at once)
                    while not (series_set and series_set[-1] > t0) and time.perf_counter() - t0 < 10:
                        await asyncio.sleep(0.002)
                    t_s = series_set[-1] if series_set and series_set[-1] > t0 else time.perf_counter()
                    while not any(p[0] - p[1] >= t_s for p in paints[-5:]) and time.perf_counter() - t0 < 10:
                        await asyncio.sleep(0.001)
                    done = next((p[0] for p in paints if p[0] - p[1] >= t_s), time.perf_counter())
                    rec["curves_ms"] = round(1000 * (done - t0), 2)
                keys.append(rec)
            rows = app.model.rows
            steps = [r.step for r in rows]
            feed = app.feed
            result = {
                "runs": len(rows),
                "steps_min": min(steps),
                "steps_max": max(steps),
                "models_applied": len(applied),
                "feed_builds": feed.builds if feed else None,
                "feed_build_ms_p50": ms(pct(feed.build_seconds, 50)) if feed else None,
                "feed_build_ms_p95": ms(pct(feed.build_seconds, 95)) if feed else None,
                "table_rebuilds": app.dashboard.table.rebuilds,
                "table_cell_updates": app.dashboard.table.cell_updates,
                "alarms": len(app.model.alarms),
            }
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)
        gc.callbacks.remove(on_gc)
    gen2 = [d for g, d in gc_pauses if g == 2]
    result.update(
        {
            "gc_collections": len(gc_pauses),
            "gc_ms_total": ms(sum(d for _, d in gc_pauses)),
            "gc_gen2_collections": len(gen2),
            "gc_gen2_ms_max": ms(max(gen2) if gen2 else None),
        }
    )
    # refresh = a model application plus the first paint after it (wall, and UI-thread CPU)
    refresh_wall, refresh_cpu = [], []
    for end, wall, cpu in applied:
        paint = next((p for p in paints if p[0] > end), (0.0, 0.0, 0.0))
        refresh_wall.append(wall + paint[1])
        refresh_cpu.append(cpu + paint[2])
    repaint = [k["repaint_ms"] / 1000 for k in keys]
    repaint_cpu = [k["cpu_ms"] / 1000 for k in keys]
    curves = [k["curves_ms"] / 1000 for k in keys if "curves_ms" in k]
    for flag, name in ((True, "on"), (False, "off")):
        sel = [k for k in keys if k["quiet"] is flag]
        result[f"key_repaint_ms_p50_quiet_{name}"] = ms(pct([k["repaint_ms"] / 1000 for k in sel], 50))
        result[f"key_repaint_ms_p95_quiet_{name}"] = ms(pct([k["repaint_ms"] / 1000 for k in sel], 95))
        result[f"key_repaint_cpu_ms_p95_quiet_{name}"] = ms(pct([k["cpu_ms"] / 1000 for k in sel], 95))
        result[f"keys_quiet_{name}"] = len(sel)
    result.update(
        {
            "apply_ms_p50": ms(pct([a[1] for a in applied], 50)),
            "apply_ms_p95": ms(pct([a[1] for a in applied], 95)),
            "paint_ms_p50": ms(pct([p[1] for p in paints], 50)),
            "paint_ms_p95": ms(pct([p[1] for p in paints], 95)),
            "refresh_ms_p50": ms(pct(refresh_wall, 50)),
            "refresh_ms_p95": ms(pct(refresh_wall, 95)),
            "refresh_ms_max": ms(max(refresh_wall) if refresh_wall else None),
            "refresh_cpu_ms_p50": ms(pct(refresh_cpu, 50)),
            "refresh_cpu_ms_p95": ms(pct(refresh_cpu, 95)),
            "refresh_cpu_ms_max": ms(max(refresh_cpu) if refresh_cpu else None),
            "loop_lag_ms_p95": ms(pct(lags, 95)),
            "loop_lag_ms_max": ms(max(lags) if lags else None),
            "key_repaint_ms_p50": ms(pct(repaint, 50)),
            "key_repaint_ms_p95": ms(pct(repaint, 95)),
            "key_repaint_ms_max": ms(max(repaint) if repaint else None),
            "keys": len(keys),
            "key_repaint_cpu_ms_p50": ms(pct(repaint_cpu, 50)),
            "key_repaint_cpu_ms_p95": ms(pct(repaint_cpu, 95)),
            "detail_curves_ms_p50": ms(pct(curves, 50)),
            "detail_curves_ms_max": ms(max(curves) if curves else None),
            "key_log": keys,
        }
    )
    return result


async def full_sweep(sweep: Path, size: tuple[int, int]) -> dict:
    """A finished 90 x 100K sweep: backfill time, memory, and a 100K-step run's curves."""
    from textual import events

    from grokwatch.tui.app import make_app
    from grokwatch.tui.config import TuiConfig
    from grokwatch.tui.screens.detail import DetailScreen

    t0 = time.perf_counter()
    app = make_app(sweep, TuiConfig(redraw=0.25, interval=1.0))
    out: dict = {}
    async with app.run_test(size=size) as pilot:
        while (
            app.model is None
            or not app.model.rows
            or any(
                r.total_steps and r.step < r.total_steps and r.phase not in ("diverged", "stalled")
                for r in app.model.rows
            )
        ):
            await asyncio.sleep(0.05)
            if time.perf_counter() - t0 > 600:
                break
        out["full_backfill_s"] = round(time.perf_counter() - t0, 2)
        out["full_steps_max"] = max(r.step for r in app.model.rows)
        await pilot.pause()
        curves = []
        for _ in range(3):
            t1 = time.perf_counter()
            ev = events.Key("enter", "\r")
            ev.set_sender(app)
            app._driver.send_message(ev)
            while not (isinstance(app.screen, DetailScreen) and app.screen.series is not None):
                await asyncio.sleep(0.002)
            await pilot.pause()
            curves.append(time.perf_counter() - t1)
            await pilot.press("escape", "j")
            await pilot.pause()
        out["full_detail_curves_ms"] = [round(1000 * c, 1) for c in curves]
        out["full_rss_mb"] = round(rss_bytes() / 2**20, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=90)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--speed", type=float, default=1000.0, help="simulated steps per second per run")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to watch the live sweep (0: skip)")
    ap.add_argument("--size", default="160x48", help="terminal size COLSxROWS")
    ap.add_argument("--key-every", type=float, default=1.0, help="seconds between key presses")
    ap.add_argument("--root", type=Path, help="where to simulate (default: a temporary directory)")
    ap.add_argument(
        "--full",
        type=Path,
        metavar="SWEEP",
        help="also open this finished sweep (e.g. written by `grokwatch simulate ROOT --runs 90 "
        "--steps 100000`): backfill time, memory at full size, 100K-step curves",
    )
    args = ap.parse_args()
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    result: dict = {}
    wall = 0.0
    sweep = None
    if args.seconds > 0:
        root = args.root or Path(tempfile.mkdtemp(prefix="grokwatch-bench-tui-"))
        from grokwatch.sim.simulate import live_simulation
        from grokwatch.store import list_runs

        with live_simulation(root, runs=args.runs, steps=args.steps, speed=args.speed) as sweep:
            deadline = time.monotonic() + 60
            while len(list_runs(sweep)) < args.runs and time.monotonic() < deadline:
                time.sleep(0.1)
            t0 = time.monotonic()
            result = asyncio.run(bench(sweep, args.seconds, (cols, rows), args.key_every))
            wall = time.monotonic() - t0
        result["live_rss_mb"] = round(rss_bytes() / 2**20, 1)
    if args.full is not None:
        result.update(asyncio.run(full_sweep(args.full, (cols, rows))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.update(
        {
            "rss_mb": round(rss_bytes() / 2**20, 1),
            "rss_peak_mb": round(peak / 2**20, 1),
            "seconds": round(wall, 1),
            "speed": args.speed,
            "size": args.size,
            "sweep": str(sweep) if sweep else None,
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
    )
    log = result.pop("key_log", [])
    for k in log:
        print(
            f"key {k['key']:>6} (quiet {'on ' if k['quiet'] else 'off'}): repaint {k['repaint_ms']:7.1f} ms "
            f"(UI thread CPU {k['cpu_ms']:6.1f} ms)" + (f", curves {k['curves_ms']:.1f} ms" if "curves_ms" in k else "")
        )
    for key in (
        "refresh_cpu_ms_p50",
        "refresh_cpu_ms_p95",
        "refresh_ms_p50",
        "refresh_ms_p95",
        "loop_lag_ms_p95",
        "key_repaint_ms_p50",
        "key_repaint_ms_p95",
        "key_repaint_cpu_ms_p50",
        "key_repaint_cpu_ms_p95",
        "key_repaint_ms_p50_quiet_on",
        "key_repaint_ms_p95_quiet_on",
        "key_repaint_cpu_ms_p95_quiet_on",
        "key_repaint_ms_p50_quiet_off",
        "key_repaint_ms_p95_quiet_off",
        "key_repaint_cpu_ms_p95_quiet_off",
        "detail_curves_ms_max",
        "gc_collections",
        "gc_ms_total",
        "gc_gen2_collections",
        "gc_gen2_ms_max",
        "live_rss_mb",
        "loadavg_1m",
        "full_backfill_s",
        "full_detail_curves_ms",
        "full_rss_mb",
    ):
        if key in result:
            print(f"{key}: {result[key]}")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
