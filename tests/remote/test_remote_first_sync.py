"""The first sync of an ssh:// source against a real loopback sshd: progress on
stderr, every run's newest data before any older shard, and the cache cap."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grokwatch.remote import Mirror, parse_ssh_url, resolve_remote
from grokwatch.remote.cache import IN_USE_SECONDS, INDEX_DIR, plan_shards, rank_shards, touch_index
from grokwatch.remote.progress import StderrProgress
from grokwatch.remote.url import cache_path
from grokwatch.store import RunReader, RunWriter
from grokwatch.store.atomic import atomic_write_bytes
from grokwatch.store.layout import ShardName
from grokwatch.store.writer import columns_to_ipc

RUNS = [f"wd{wd}-s{s:02d}" for wd in ("0.1", "1.0") for s in range(3)]


def make_sweep(
    sweep: Path, runs=RUNS, shards: int = 30, rows: int = 20, probes_every: int = 5, state: str = "completed"
) -> dict[str, int]:
    """Runs of ``shards`` small scalars shards (plus a probes shard every
    ``probes_every``), a checkpoint and a snapshot each; run id -> last step."""
    last = {}
    for i, rid in enumerate(runs):
        w = RunWriter(sweep / rid, {"run_id": rid, "seed": i}, flush_steps=10**9, flush_seconds=10**9).open()
        for k in range(shards):
            steps = np.arange(k * rows + 1, (k + 1) * rows + 1)
            w.write_shard("scalars", {"step": steps, "train_loss": 1.0 / steps, "val_acc": np.full(rows, 0.01 * i)})
            if (k + 1) % probes_every == 0:
                w.write_shard("probes", {"step": steps[-1:], "h0_total": [float(k)]})
        (sweep / rid / "checkpoint.pt").write_bytes(b"\0" * 50_000)
        (sweep / rid / "snapshots").mkdir()
        (sweep / rid / "snapshots" / "step-000000100.pt").write_bytes(b"\0" * 20_000)
        if state == "running":
            w.write_status(force=True)
        else:
            w.close(state)
        last[rid] = shards * rows
    return last


def mirror_of(url: str, cache: Path, ssh_config: Path, **kw) -> Mirror:
    kw.setdefault("interval", 0.05)
    kw.setdefault("backoff", (0.05, 0.5))
    return Mirror(url, cache, ssh_config=ssh_config, allow_agent=False, look_for_keys=False, **kw)


def newest_first(url: str, cache: Path, ssh_config: Path, **kw):
    """resolve_remote as the dashboard opens a remote sweep: each run's newest data, the rest not yet."""
    return resolve_remote(
        url,
        cache,
        start=False,
        newest_only=True,
        ssh_config=ssh_config,
        allow_agent=False,
        look_for_keys=False,
        cache_mb=0,
        interval=0.05,
        **kw,
    )


def shard_key(rel: str) -> tuple[str, str, tuple[int, int]]:
    run, _, name = rel.split("/")
    s = ShardName.parse(name)
    assert s is not None
    return run, s.kind, (s.attempt, s.last_step)


def newest_per_run(sweep: Path) -> dict[tuple[str, str], str]:
    """(run, kind) -> relative path of its newest shard on the server."""
    out: dict[tuple[str, str], tuple] = {}
    for p in sweep.glob("*/shards/*.arrow"):
        run, kind, key = shard_key(str(p.relative_to(sweep)))
        if (run, kind) not in out or key > out[(run, kind)][0]:
            out[(run, kind)] = (key, str(p.relative_to(sweep)))
    return {k: v[1] for k, v in out.items()}


def last_step(run_dir: Path) -> int | None:
    r = RunReader(run_dir, kinds=("scalars",))
    r.refresh()
    steps = r.scalars.get("step")
    return int(steps[-1]) if steps is not None and len(steps) else None


# --- pure planning ------------------------------------------------------------------------


def test_plan_keeps_every_runs_newest_and_drops_the_oldest():
    runs = {f"r{i}/": [(f"scalars-{k:09d}.arrow", "scalars", (0, k), 100) for k in range(1, 11)] for i in range(3)}
    runs["r0/"].append(("scalars-000000003-a01.arrow", "scalars", (1, 3), 100))  # a resumed attempt is the newest
    ranked = rank_shards(runs)
    assert [s.rank for s in ranked] == sorted(s.rank for s in ranked)
    assert {(s.run, s.name) for s in ranked if s.rank == 0} == {
        ("r0/", "scalars-000000003-a01.arrow"),
        ("r1/", "scalars-000000010.arrow"),
        ("r2/", "scalars-000000010.arrow"),
    }
    kept, dropped = plan_shards(ranked, 1000)
    assert sum(s.size for s in kept) <= 1000 and len(kept) + len(dropped) == 31
    for run in runs:
        mine = sorted((s for s in ranked if s.run == run), key=lambda s: s.rank)
        n = sum(1 for s in kept if s.run == run)
        assert {s.name for s in kept if s.run == run} == {s.name for s in mine[:n]}  # the newest n of the run
        assert n >= 3
    # A budget under the newest shards alone still keeps them (the table needs them).
    kept, dropped = plan_shards(ranked, 10)
    assert {s.rank for s in kept} == {0} and len(kept) == 3
    assert plan_shards(ranked, None) == (ranked, [])


# --- against sshd -------------------------------------------------------------------------


@pytest.mark.slow
def test_first_sync_reports_progress_on_stderr(sshd, ssh_config, tmp_path):
    sweep = tmp_path / "remote" / "sw"
    make_sweep(sweep, shards=60)
    n_files = len(list(sweep.glob("*/shards/*.arrow"))) + 2 * len(RUNS)
    url = f"ssh://gwtest{sweep}"
    err = io.StringIO()
    local, m = resolve_remote(
        url,
        tmp_path / "cache",
        start=False,
        ssh_config=ssh_config,
        allow_agent=False,
        look_for_keys=False,
        progress=StderrProgress(err, every=0.0, connect_delay=0.0),
    )
    m.close()
    lines = err.getvalue().splitlines()
    assert lines[0] == f"grokwatch: connecting to gwtest ({sshd.user}@127.0.0.1:{sshd.port}) ..."
    assert any(re.match(r"grokwatch: listing \d of 6 runs, newest data first", x) for x in lines)
    counts = [
        (int(a.replace(",", "")), int(b.replace(",", "")))
        for a, b in re.findall(r"^grokwatch: syncing ([\d,]+) of ([\d,]+) files", err.getvalue(), re.M)
    ]
    assert len(counts) > 10, lines
    assert {t for _, t in counts} == {n_files}
    assert [d for d, _ in counts] == sorted(d for d, _ in counts) and n_files - 5 <= counts[-1][0] < n_files
    assert re.fullmatch(
        rf"grokwatch: synced {n_files} files \(\d+\.\d MB\) in [\d.]+ s; cache {re.escape(str(local))}", lines[-1]
    )


@pytest.mark.slow
def test_headless_command_prints_progress_and_keeps_stdout_clean(sshd, tmp_path):
    sweep = tmp_path / "remote" / "sw"
    make_sweep(sweep, shards=40)
    home = tmp_path / "home"
    sshd.write_config(home / ".ssh" / "config")
    env = {
        "HOME": str(home),
        "GROKWATCH_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
        "SSH_AUTH_SOCK": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "grokwatch", "alerts", f"ssh://gwtest{sweep}", "--once", "--no-predict"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    n = len(list(sweep.glob("*/shards/*.arrow"))) + 2 * len(RUNS)
    assert any(x.startswith(f"grokwatch: synced {n} files (") for x in err), err
    for line in out.stdout.splitlines():  # stdout stays JSON lines
        json.loads(line)
    # Weights are never mirrored.
    local = cache_path(parse_ssh_url(f"ssh://gwtest{sweep}"), tmp_path / "cache")
    assert not list(local.rglob("checkpoint.pt")) and not list(local.rglob("snapshots"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 4])
def test_every_runs_newest_data_comes_before_any_older_shard(sshd, ssh_config, tmp_path, workers):
    sweep = tmp_path / "remote" / "sw"
    last = make_sweep(sweep, shards=30, state="running")
    newest = set(newest_per_run(sweep).values())
    assert len(newest) == 2 * len(RUNS)
    url = f"ssh://gwtest{sweep}"
    local = cache_path(parse_ssh_url(url), tmp_path / "cache")

    # A slow first sync: a pass fetches at most 7 files (as if cut off), the next goes on.
    order: list[str] = []
    with mirror_of(url, tmp_path / "cache", ssh_config, max_files_per_pass=7, cache_mb=0, workers=workers) as m:
        passes = 0
        while True:
            r = m.sync_once()
            passes += 1
            order += r.fetched
            if passes == 3:  # 21 of the 24 newest files in: not one older shard yet
                assert not [f for f in order if "/shards/" in f and f not in newest]
            if passes == 4:  # 28 files in: every run's latest state is there
                for rid, step in last.items():
                    assert last_step(local / rid) == step
                    assert json.loads((local / rid / "status.json").read_text())["last_step"] == step
            if r.complete:
                break
            assert len(r.fetched) == 7
        assert m.complete and m.notice() is None
    first_old = next(i for i, f in enumerate(order) if "/shards/" in f and f not in newest)
    head = set(order[:first_old])
    assert head == newest | {f"{rid}/{n}" for rid in RUNS for n in ("run.json", "status.json")}
    # The backfill goes newest first, rank by rank across the runs (exactly so over one SFTP session).
    ranks = {}
    for (run, kind), _ in newest_per_run(sweep).items():
        names = sorted((p.name for p in (sweep / run / "shards").glob(f"{kind}-*.arrow")), reverse=True)
        ranks.update({f"{run}/shards/{n}": i for i, n in enumerate(names)})
    backfill = [ranks[f] for f in order[first_old:] if "/shards/" in f]
    assert backfill[0] == 1 and (backfill == sorted(backfill) or workers > 1)
    assert set(order) == {
        str(p.relative_to(sweep))
        for p in sweep.rglob("*")
        if p.name in ("run.json", "status.json") or p.suffix == ".arrow"
    }
    shards = [f for f in order if "/shards/" in f]
    assert len(shards) == len(set(shards))  # each shard once, whatever the passes
    # The cache tells the same story (mtimes are the server's; ctimes are when each file landed).
    landed = {f: os.stat(local / f).st_ctime_ns for f in shards}
    assert max(landed[f] for f in newest) <= min(landed[f] for f in shards if f not in newest)


@pytest.mark.slow
def test_dashboard_start_returns_with_every_runs_latest_step_then_backfills(sshd, ssh_config, tmp_path):
    sweep = tmp_path / "remote" / "sw"
    last = make_sweep(sweep, shards=60)
    url = f"ssh://gwtest{sweep}"
    err = io.StringIO()
    local, m = newest_first(url, tmp_path / "cache", ssh_config, progress=StderrProgress(err, every=0.0))
    try:
        assert err.getvalue().splitlines()[-1].startswith("grokwatch: newest data of all 6 runs in ")
        shards = list(local.glob("*/shards/*.arrow"))
        assert len(shards) == 2 * len(RUNS)  # only the newest scalars and probes shard of each run
        for rid, step in last.items():
            assert last_step(local / rid) == step
        assert not m.complete and m.notice() == "newest data of all 6 runs; syncing older rows"
        m.start()
        assert m.wait_complete(60)
        assert sorted(p.name for p in local.rglob("*.arrow")) == sorted(p.name for p in sweep.rglob("*.arrow"))
        for rid, step in last.items():
            r = RunReader(local / rid, kinds=("scalars",))
            r.refresh()
            assert np.array_equal(r.scalars["step"], np.arange(1, step + 1))
    finally:
        m.close()


@pytest.mark.slow
def test_cache_cap_keeps_every_runs_newest_shards_and_evicts_other_sweeps_lru(sshd, ssh_config, tmp_path, caplog):
    cache_root = tmp_path / "cache"
    sweep = tmp_path / "remote" / "sw"
    make_sweep(sweep, shards=30, probes_every=10**6, state="running")  # scalars only
    sizes = {str(p.relative_to(sweep)): p.stat().st_size for p in sweep.glob("*/shards/*.arrow")}
    total = sum(sizes.values())
    url = f"ssh://gwtest{sweep}"
    local = cache_path(parse_ssh_url(url), cache_root)

    # Two other sweeps mirrored before: one idle for days, one in use right now.
    old = cache_path(parse_ssh_url("ssh://elsewhere/data/old"), cache_root)
    busy = cache_path(parse_ssh_url("ssh://elsewhere/data/busy"), cache_root)
    for path, age in ((old, 3 * 86400), (busy, 10)):
        (path / "r" / "shards").mkdir(parents=True)
        (path / "r" / "shards" / "scalars-000000001.arrow").write_bytes(b"x" * (total // 4))
        touch_index(cache_root, path, f"ssh://elsewhere{path}")
        entry = next(e for e in (cache_root / INDEX_DIR).iterdir() if str(path) in e.read_text())
        os.utime(entry, (time.time() - age, time.time() - age))
    assert IN_USE_SECONDS > 10

    cap = total // 4 + total // 2  # the busy sweep stays: room for about half of this one
    caplog.set_level(logging.WARNING, logger="grokwatch.remote")
    with mirror_of(url, cache_root, ssh_config, cache_mb=cap / 1e6) as m:
        r = m.sync_once()
        assert r.complete
        assert not old.exists() and busy.exists()
        notes = [rec.getMessage() for rec in caplog.records if "cache cap" in rec.getMessage()]
        assert len(notes) == 1 and "GROKWATCH_SSH_CACHE_MB" in notes[0] and "oldest" in notes[0]
        assert any("removed the cached copy of ssh://elsewhere" in rec.getMessage() for rec in caplog.records)

        def check_kept():
            used = sum(p.stat().st_size for p in cache_root.rglob("*") if p.is_file())
            assert used <= cap
            kept = {str(p.relative_to(local)) for p in local.glob("*/shards/*.arrow")}
            assert len(kept) < len(list(sweep.glob("*/shards/*.arrow")))
            for rid in RUNS:  # every run keeps its newest shards, a contiguous tail, and drops the oldest
                remote = sorted(p.name for p in (sweep / rid / "shards").glob("*.arrow"))
                mine = sorted(n.split("/")[-1] for n in kept if n.startswith(f"{rid}/"))
                assert len(mine) >= 10 and mine == remote[len(remote) - len(mine) :]
            return kept

        kept = check_kept()
        assert m.notice().startswith(f"cache cap {cap / 1e6:.1f} MB: newest ~")
        # The sweep goes on: new shards come in, the oldest local ones go.
        for rid in RUNS:
            atomic_write_bytes(
                sweep / rid / "shards" / "scalars-000000620.arrow",
                columns_to_ipc({"step": np.arange(601, 621), "train_loss": np.ones(20)}),
            )
        r = m.sync_once()
        assert {f for f in r.fetched if "/shards/" in f} == {f"{rid}/shards/scalars-000000620.arrow" for rid in RUNS}
        kept2 = check_kept()
        assert kept2 - kept == {f"{rid}/shards/scalars-000000620.arrow" for rid in RUNS}
        assert len([rec for rec in caplog.records if "cache cap" in rec.getMessage()]) == 1
    for rid in RUNS:
        assert last_step(local / rid) == 620


@pytest.mark.slow
def test_dashboard_source_starts_early_and_says_how_the_sync_goes(sshd, tmp_path, monkeypatch, capsys):
    """What the dashboard does: resolve_source(early=True), then the status line's notice."""
    from grokwatch.remote import close_sources
    from grokwatch.remote.source import resolve_source, source_notice
    from grokwatch.tui.model import SweepModel
    from grokwatch.tui.widgets.status_bar import StatusBar

    sweep = tmp_path / "remote" / "sw"
    last = make_sweep(sweep, shards=80)
    home = tmp_path / "home"
    sshd.write_config(home / ".ssh" / "config")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GROKWATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SSH_AUTH_SOCK", "")
    url = f"ssh://gwtest{sweep}"
    try:
        local = resolve_source(url, early=True)
        assert "grokwatch: newest data of all 6 runs in " in capsys.readouterr().err
        for rid, step in last.items():
            assert last_step(local / rid) == step
        bar = StatusBar("testhost")
        bar.model = SweepModel(sweep="sw", path=str(local))
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            plain = bar.text(time.time()).plain
            note = source_notice(local)
            if note is None:
                break  # the mirror is complete (and stays so)
            seen.add(note)  # the sync was still going when the line was drawn: the line says so
            assert re.search(
                r" (newest data of all 6 runs; syncing older rows|syncing [\d,]+ of [\d,]+ files|listing|connecting)",
                plain,
            ), plain
            time.sleep(0.01)
        assert note is None and "sync" not in bar.text(time.time()).plain
        assert any(
            re.fullmatch(r"(newest data of all 6 runs; syncing older rows|syncing [\d,]+ of [\d,]+ files .*)", n)
            for n in seen
        ), seen
        assert sorted(p.name for p in local.rglob("*.arrow")) == sorted(p.name for p in sweep.rglob("*.arrow"))
        assert source_notice(tmp_path) is None  # a local sweep has nothing to say
    finally:
        close_sources()


def test_alarms_of_a_sweep_opened_early_cover_its_whole_history(sshd, ssh_config, tmp_path):
    """A dashboard opened on the newest data while older shards still come: its alarm
    engine ends with every alarm of the sweep's history, each once (the same as one
    opened after the sync), not only those of the rows it saw first."""
    from grokwatch.alerts import AlarmSubscriber, AlertEngine, Rule
    from grokwatch.watch import SweepWatcher

    sweep = tmp_path / "remote" / "sw"
    spikes = (35, 410, 777, 1150, 1195)
    for i, rid in enumerate(RUNS[:3]):
        w = RunWriter(sweep / rid, {"run_id": rid, "seed": i}, flush_steps=10**9, flush_seconds=10**9).open()
        for k in range(60):
            steps = np.arange(k * 20 + 1, (k + 1) * 20 + 1)
            grad = np.where(np.isin(steps, spikes), 5.0, 1.0)
            w.write_shard("scalars", {"step": steps, "train_loss": 1.0 / steps, "grad_norm": grad})
        w.close("completed")
    rules = [Rule("grad_jump", "grad_norm", ">", 2.0)]

    def key(events):
        return sorted((e.run, e.rule, e.state, e.step) for e in events)

    whole = []
    SweepWatcher(sweep, subscribers=[AlarmSubscriber(AlertEngine(rules), on_events=whole.extend)]).cycle()
    assert len(whole) == 3 * 2 * len(spikes)  # firing and resolved at each spike of each run

    local, m = newest_first(f"ssh://gwtest{sweep}", tmp_path / "cache", ssh_config)
    got: list = []
    # finished_every=1: every cycle looks at the (finished) runs again, as inotify would have it
    watcher = SweepWatcher(
        local, subscribers=[AlarmSubscriber(AlertEngine(rules), on_events=got.extend)], finished_every=1
    )
    try:
        watcher.cycle()  # the newest shard of each run: only the spike at 1195
        assert {e.step for e in got} == {1195, 1196}
        m.start()
        deadline = time.monotonic() + 60
        while not m.complete and time.monotonic() < deadline:
            watcher.cycle()  # older shards land between cycles
            time.sleep(0.02)
        assert m.wait_complete(10)
        watcher.cycle()
    finally:
        m.close()
        watcher.close()
    assert key(got) == key(whole)
    assert len({e.id for e in got}) == len(got)
