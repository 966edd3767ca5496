"""The ssh:// source against a real loopback sshd: mirroring a sweep while it is
written, host keys, and a link cut in the middle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grokwatch.commands.main import main
from grokwatch.remote import HostKeyError, Mirror, RemoteError, parse_ssh_url, resolve_remote
from grokwatch.remote.url import cache_path
from grokwatch.store import RunReader, RunWriter
from grokwatch.store.layout import ShardName


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def mirror_of(url: str, tmp_path: Path, ssh_config: Path, **kw) -> Mirror:
    kw.setdefault("interval", 0.05)
    kw.setdefault("backoff", (0.05, 0.5))
    return Mirror(url, tmp_path / "cache", ssh_config=ssh_config, allow_agent=False, look_for_keys=False, **kw)


def write_runs(sweep: Path, run_ids, steps: int, *, flush_steps: int = 10, pause: float = 0.0, start_event=None):
    """Write runs through RunWriter, interleaved, as trainers would."""
    writers = {}
    for rid in run_ids:
        w = RunWriter(
            sweep / rid, {"run_id": rid, "seed": 0}, flush_steps=flush_steps, flush_seconds=60, heartbeat_seconds=0.0
        )
        writers[rid] = w.open()
    for step in range(1, steps + 1):
        for i, w in enumerate(writers.values()):
            w.log("scalars", step, {"train_loss": 4.5 / step, "train_acc": min(1.0, step / steps), "val_acc": 0.01 * i})
            if step % 25 == 0:
                w.log("probes", step, {"h0_total": float(step)})
            w.maybe_flush()
        if start_event is not None and step == flush_steps * 2:
            start_event.set()
        if pause:
            time.sleep(pause)
    for w in writers.values():
        w.close("completed")


def assert_same_tree(remote: Path, local: Path):
    """Every mirrored file is byte-identical, none is missing, no *.tmp is left."""
    wanted = sorted(
        p.relative_to(remote)
        for p in remote.rglob("*")
        if p.is_file() and (p.name in ("run.json", "status.json", "sweep.json") or ShardName.parse(p.name))
    )
    got = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert got == wanted
    for rel in wanted:
        assert (remote / rel).read_bytes() == (local / rel).read_bytes(), rel


def steps(run_dir: Path) -> np.ndarray:
    r = RunReader(run_dir, kinds=("scalars",))
    r.refresh()
    assert not r.failed_files
    return r.scalars.get("step", np.zeros(0, dtype=np.int64))


def test_url_and_cache_path(tmp_path):
    u = parse_ssh_url("ssh://alice@example.org:2222/data/sweeps/s1/")
    assert (u.user, u.host, u.port, u.path) == ("alice", "example.org", 2222, "/data/sweeps/s1")
    assert str(u) == "ssh://alice@example.org:2222/data/sweeps/s1"
    assert parse_ssh_url("ssh://h/~/runs/s").path == "~/runs/s"
    assert cache_path(u, tmp_path) == tmp_path / "example.org_2222" / "data" / "sweeps" / "s1"
    for bad in ("ssh://h", "ssh://h/", "ssh:///x", "ssh://h/a/../b", "ssh://h:99999/x", "ssh://h/x?y=1", "http://h/x"):
        with pytest.raises(RemoteError):
            parse_ssh_url(bad)


@pytest.mark.slow
def test_mirrors_a_sweep_while_it_is_written(sshd, ssh_config, tmp_path):
    sweep = tmp_path / "remote" / "sw"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text('{"tasks": []}\n')
    url = f"ssh://gwtest{sweep}"
    started = threading.Event()
    writer = threading.Thread(
        target=write_runs,
        args=(sweep, ["wd0.1-s00", "wd0.1-s01", "wd1.0-s00"], 400),
        kwargs={"pause": 0.004, "start_event": started},
    )
    seen_partial = []
    local = cache_path(parse_ssh_url(url), tmp_path / "cache")
    with mirror_of(url, tmp_path, ssh_config) as mirror:
        writer.start()
        started.wait(10)
        mirror.start()
        # While the writer is still going, the local copy already holds part of a run.
        while writer.is_alive():
            if (local / "wd0.1-s00" / "run.json").exists():
                n = len(steps(local / "wd0.1-s00"))
                if 0 < n < 400:
                    seen_partial.append(n)
            time.sleep(0.05)
        writer.join()
        assert mirror.wait_pass(10) and mirror.wait_pass(10)
        time.sleep(1.6)  # past the settle time of status.json
        assert mirror.wait_pass(10) and mirror.wait_pass(10)
        assert mirror.error is None
    assert seen_partial, "the mirror never showed a run in progress"
    assert_same_tree(sweep, local)
    for rid in ("wd0.1-s00", "wd0.1-s01", "wd1.0-s00"):
        assert np.array_equal(steps(local / rid), np.arange(1, 401))
    shard_counts = {k: v for k, v in mirror.fetch_counts.items() if "/shards/" in k}
    assert len(shard_counts) == len(list(sweep.rglob("shards/*.arrow"))) > 30
    assert set(shard_counts.values()) == {1}, "a shard was read twice"

    # A new mirror on the same cache resumes: no shard is fetched again.
    with mirror_of(url, tmp_path, ssh_config) as again:
        again.sync_once()
        assert not [k for k in again.fetch_counts if "/shards/" in k]


@pytest.mark.slow
# paramiko's prefetch thread may report the socket closed under it; the fetch itself is repeated.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_link_cut_mid_file_and_server_restart_lose_and_repeat_nothing(sshd, ssh_config, tmp_path):
    sweep = tmp_path / "remote" / "sw"
    run = sweep / "big"
    w = RunWriter(run, {"run_id": "big"}, flush_steps=10**9).open()
    # One shard of ~3 MB (several read chunks), then small ones.
    n = 400_000
    w.write_shard("scalars", {"step": np.arange(1, n + 1), "train_loss": np.random.default_rng(0).random(n)})
    big_rel = f"big/shards/scalars-{n:09d}.arrow"
    cut = {"done": False}

    class CuttingMirror(Mirror):
        def _on_chunk(self, rel, nbytes):
            if rel == big_rel and not cut["done"]:
                cut["done"] = True
                assert sshd.cut() >= 1
                raise OSError("link cut by the test")  # the read fails here, mid-file

    url = f"ssh://gwtest{sweep}"
    local = cache_path(parse_ssh_url(url), tmp_path / "cache")
    mirror = CuttingMirror(
        url,
        tmp_path / "cache",
        ssh_config=ssh_config,
        allow_agent=False,
        look_for_keys=False,
        interval=0.05,
        backoff=(0.05, 0.3),
    )
    with mirror:
        mirror.start()
        wait_until(lambda: mirror.fetch_counts[big_rel] == 1, 30, "the big shard after the cut")
        assert cut["done"] and mirror.fetch_attempts[big_rel] == 2 and mirror.connection.connects >= 2

        # Keep writing; stop the whole server for a while; restart it.
        def more(first, last):
            for step in range(first, last + 1):
                w.log("scalars", step, {"train_loss": 0.0})
                if step % 20 == 0:
                    w.flush()

        more(n + 1, n + 100)
        sshd.stop()
        more(n + 101, n + 300)
        time.sleep(0.5)  # the mirror fails to reconnect and backs off
        sshd.restart()
        more(n + 301, n + 400)
        w.close("completed")
        wait_until(
            lambda: (
                (local / "big" / "status.json").exists()
                and '"completed"' in (local / "big" / "status.json").read_text()
            ),
            30,
            "the final status",
        )
        assert mirror.wait_pass(10) and mirror.wait_pass(10)
        assert mirror.error is None and mirror.failures >= 2
    assert_same_tree(sweep, local)  # also: no *.tmp left behind
    assert np.array_equal(steps(local / "big"), np.arange(1, n + 401))
    shard_counts = {k: v for k, v in mirror.fetch_counts.items() if "/shards/" in k}
    assert set(shard_counts.values()) == {1} and len(shard_counts) == 21


def test_changed_host_key_is_refused(sshd, tmp_path):
    other = tmp_path / "other_key.pub"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other_key")], check=True)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.read_text().split()[:2])}\n")
    cfg = sshd.write_config(tmp_path / "ssh_config", known_hosts=str(kh))
    (tmp_path / "remote").mkdir()
    for trust in (False, True):  # trusting new keys never covers a changed one
        m = Mirror(
            f"ssh://gwtest{tmp_path / 'remote'}",
            tmp_path / "cache",
            ssh_config=cfg,
            allow_agent=False,
            look_for_keys=False,
            trust_new_host_key=trust,
        )
        with pytest.raises(HostKeyError) as info:
            m.sync_once()
        m.close()
        msg = str(info.value)
        assert "CHANGED" in msg and f"[127.0.0.1]:{sshd.port}" in msg and "\n" not in msg
    assert kh.read_text().count("\n") == 1  # known_hosts untouched


def test_changed_host_key_on_the_command_line_is_one_line(sshd, tmp_path, monkeypatch, capsys):
    """`grokwatch sweep status --root ssh://...` with ~/.ssh/config from $HOME."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    home = tmp_path / "home"
    kh = home / ".ssh" / "known_hosts"
    kh.parent.mkdir(parents=True)
    kh.write_text(f"[127.0.0.1]:{sshd.port} {' '.join((tmp_path / 'k.pub').read_text().split()[:2])}\n")
    sshd.write_config(home / ".ssh" / "config", known_hosts=str(kh))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GROKWATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["sweep", "status", "--root", f"ssh://gwtest{tmp_path}", "--sweep", "sw"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokwatch: error: host key for") and "CHANGED" in err and err.count("\n") == 1


def test_unknown_host_needs_the_trust_flag_then_is_remembered(sshd, tmp_path):
    kh = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    cfg = sshd.write_config(tmp_path / "ssh_config", known_hosts=str(kh))
    remote = tmp_path / "remote"
    remote.mkdir()
    url = f"ssh://gwtest{remote}"
    with pytest.raises(HostKeyError, match="not in .*--trust-new-host-key"):
        resolve_remote(url, tmp_path / "cache", ssh_config=cfg, allow_agent=False, look_for_keys=False)
    local, m = resolve_remote(
        url,
        tmp_path / "cache",
        start=False,
        ssh_config=cfg,
        allow_agent=False,
        look_for_keys=False,
        trust_new_host_key=True,
    )
    m.close()
    assert local.is_dir()
    assert f"[127.0.0.1]:{sshd.port}" in kh.read_text()
    assert Path(sshd.host_key_pub).read_text().split()[1] in kh.read_text()
    local, m = resolve_remote(
        url, tmp_path / "cache", start=False, ssh_config=cfg, allow_agent=False, look_for_keys=False
    )  # RejectPolicy, and now known
    m.close()


def test_runner_runs_commands_quoted_over_the_same_connection(sshd, ssh_config, tmp_path):
    (tmp_path / "remote").mkdir()
    local, m = resolve_remote(
        f"ssh://gwtest{tmp_path / 'remote'}",
        tmp_path / "cache",
        start=False,
        ssh_config=ssh_config,
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        res = m.runner(["printf", "%s|", "a b", "$HOME", "'q'"], 20)
        assert res.returncode == 0 and res.stdout == "a b|$HOME|'q'|"
        res = m.runner(["sh", "-c", "echo oops >&2; exit 3"], 20)
        assert res.returncode == 3 and res.stderr == "oops\n"
        assert m.connection.connects == 1
    finally:
        m.close()


def test_missing_remote_directory_is_one_clear_error(sshd, ssh_config, tmp_path):
    with pytest.raises(RemoteError, match="no such directory"):
        resolve_remote(
            f"ssh://gwtest{tmp_path / 'nope'}",
            tmp_path / "cache",
            ssh_config=ssh_config,
            allow_agent=False,
            look_for_keys=False,
        )


def test_key_from_the_ssh_agent(sshd, tmp_path, monkeypatch):
    """No IdentityFile and no default keys: the key comes from a running ssh-agent."""
    if not shutil.which("ssh-agent") or not shutil.which("ssh-add"):
        pytest.skip("ssh-agent/ssh-add not installed")
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, timeout=30, check=True)
    pid = int(out.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", sshd.client_key], env=env, capture_output=True, timeout=30, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        cfg = tmp_path / "ssh_config"
        cfg.write_text(
            f"Host viaagent\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
            f"  UserKnownHostsFile {sshd.known_hosts}\n"
        )
        (tmp_path / "remote").mkdir()
        local, m = resolve_remote(
            f"ssh://viaagent{tmp_path / 'remote'}", tmp_path / "cache", start=False, ssh_config=cfg, look_for_keys=False
        )
        m.close()
        assert local.is_dir()
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with pytest.raises(RemoteError, match="authentication"):
            resolve_remote(
                f"ssh://viaagent{tmp_path / 'remote'}",
                tmp_path / "cache",
                start=False,
                ssh_config=cfg,
                look_for_keys=False,
            )
    finally:
        os.kill(pid, signal.SIGTERM)


def test_open_mirror_is_a_resolver_that_keeps_syncing(sshd, ssh_config, tmp_path):
    from grokwatch.remote import close_sources, open_mirror, runner_for

    sweep = tmp_path / "remote" / "sw"
    write_runs(sweep, ["a"], 20)
    url = f"ssh://gwtest{sweep}"
    kw = dict(
        cache_dir=tmp_path / "cache", ssh_config=ssh_config, allow_agent=False, look_for_keys=False, interval=0.05
    )
    try:
        local = open_mirror(url, **kw)
        assert open_mirror(url, **kw) == local  # one mirror per URL
        assert np.array_equal(steps(local / "a"), np.arange(1, 21))
        write_runs(sweep, ["b"], 30)  # a run that appears later arrives by itself
        wait_until(lambda: (local / "b" / "status.json").exists() and len(steps(local / "b")) == 30, 20, "run b")
        assert runner_for(local)(["echo", "hi"], 20).stdout == "hi\n"
        assert runner_for(tmp_path) is None
    finally:
        close_sources()
    assert runner_for(local) is None
