"""Every command that can read a remote sweep takes ``--trust-new-host-key`` (the
flag the unknown-host error names) and says in its help that SOURCE may be
``ssh://[user@]host[:port]/path``; the flag reaches the SSH connection."""

from __future__ import annotations

import pytest

from grokwatch.commands import SSH_SOURCE, TRUST_ENV
from grokwatch.commands.main import build_parser, main
from grokwatch.errors import UsageError

URL = "ssh://me@cluster.example:2222/scratch/me/sweeps/s1"

# command line of each remote-capable command, its SOURCE an ssh:// URL
COMMANDS = {
    "tui": ["tui", URL],
    "alerts": ["alerts", URL, "--once"],
    "predict": ["predict", URL],
    "report": ["report", URL, "--out", "OUT"],
    "silence": ["silence", "wd0.3-s01", "--for", "1h", "--source", URL],
    "sweep status": ["sweep", "status", "--root", "ssh://me@cluster.example:2222/scratch/me/sweeps", "--sweep", "s1"],
}


def _subparser(parser, words):
    for w in words:
        action = next(a for a in parser._actions if getattr(a, "choices", None) and w in a.choices)
        parser = action.choices[w]
    return parser


@pytest.mark.parametrize("name", COMMANDS)
def test_the_flag_and_the_ssh_form_are_in_every_remote_commands_help(name):
    help_text = " ".join(_subparser(build_parser(), name.split()).format_help().split())
    assert "--trust-new-host-key" in help_text
    assert SSH_SOURCE in help_text


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("flag", [True, False])
def test_the_flag_reaches_the_ssh_connection(name, flag, monkeypatch, tmp_path):
    import grokwatch.remote as remote

    monkeypatch.delenv(TRUST_ENV, raising=False)  # restored, whatever the flag sets, after the test
    seen = []

    def refuse(url, *args, trust_new_host_key=False, **kwargs):
        seen.append((url, trust_new_host_key))
        raise UsageError("stop here: no network in tests")

    monkeypatch.setattr(remote, "open_mirror", refuse)  # what `grokwatch SOURCE` and friends resolve through
    monkeypatch.setattr(remote, "resolve_remote", refuse)  # what `sweep status` connects with
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in COMMANDS[name]]
    assert main(argv + (["--trust-new-host-key"] if flag else [])) == 2
    assert len(seen) == 1 and seen[0][0].startswith("ssh://me@cluster.example:2222/scratch/me/sweeps")
    assert seen[0][1] is flag
