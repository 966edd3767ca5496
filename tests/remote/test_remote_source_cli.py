"""`grokwatch alerts ssh://...`: the remote source behind the headless commands."""

from __future__ import annotations

import json
import subprocess
import sys

from grokwatch.sim.simulate import simulate_sweep


def test_alerts_once_over_ssh_reads_the_remote_sweep(sshd, tmp_path):
    remote_root = tmp_path / "remote"
    simulate_sweep(remote_root, "sw", runs=4, steps=3000, seed=3)
    home = tmp_path / "home"
    sshd.write_config(home / ".ssh" / "config")
    env = {
        "HOME": str(home),
        "GROKWATCH_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
        "SSH_AUTH_SOCK": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "grokwatch", "alerts", f"ssh://gwtest{remote_root / 'sw'}", "--once", "--no-predict"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert {e["rule"] for e in events} >= {"memorized"}
    assert {e["run"] for e in events if e["rule"] == "memorized"} == {
        p.name for p in (remote_root / "sw").iterdir() if (p / "run.json").exists()
    }
    # The alarm journal lives in the local mirror, never written on the remote side.
    assert not (remote_root / "sw" / ".grokwatch" / "alarms.jsonl").exists()


def test_unknown_ssh_host_is_one_line_error(sshd, tmp_path):
    home = tmp_path / "home"
    sshd.write_config(home / ".ssh" / "config", known_hosts=str(tmp_path / "empty_known_hosts"))
    env = {
        "HOME": str(home),
        "GROKWATCH_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
        "SSH_AUTH_SOCK": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "grokwatch", "alerts", f"ssh://gwtest{tmp_path}", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("grokwatch: error:") and out.stderr.count("\n") == 1
