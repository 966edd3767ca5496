"""SOURCE resolution: one function, one-line usage errors."""

from __future__ import annotations

import pytest
from watch_helpers import write_flat_run

from grokwatch.errors import UsageError
from grokwatch.remote.source import RESOLVERS, resolve_source


def test_resolve_source(tmp_path, monkeypatch):
    sweep = tmp_path / "root" / "sw"
    write_flat_run(sweep, "r1", n=100)
    assert resolve_source(str(sweep)) == sweep.resolve()
    assert resolve_source(f"file://{sweep}") == sweep.resolve()
    assert resolve_source(str(tmp_path / "root")) == sweep.resolve()  # a root with one sweep
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source("~/root/sw") == sweep.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_source(str(empty)) == empty.resolve()  # a sweep before its first run
    for bad, words in (
        (tmp_path / "nope", "no such"),
        (sweep / "r1", "run directory"),
        ("gopher://host/x", "not supported"),
    ):
        with pytest.raises(UsageError, match=words):
            resolve_source(str(bad))
    write_flat_run(tmp_path / "root" / "sw2", "r1", n=100)
    with pytest.raises(UsageError, match="several sweeps"):
        resolve_source(str(tmp_path / "root"))
    monkeypatch.setitem(RESOLVERS, "ssh", lambda s: sweep)  # how a remote resolver plugs in
    assert resolve_source("ssh://host/x") == sweep
