"""Names on disk: the one place that knows the layout of DESIGN section 2.

```
<root>/<sweep>/<run_id>/
    run.json            written once, atomically, before step 1
    status.json         state, last_step, heartbeat (UTC), pid / job ids
    shards/<kind>-<last_step:09d>[-a<attempt:02d>].arrow
    checkpoint.pt
```

A requeued or resumed run is a new *attempt*; its shards carry the attempt in
their name so they never overwrite the earlier attempt's files, and readers
prefer the newest attempt's row when steps repeat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_JSON = "run.json"
STATUS_JSON = "status.json"
SHARDS_DIR = "shards"
CHECKPOINT = "checkpoint.pt"
SNAPSHOTS_DIR = "snapshots"
WATCHER_DIR = ".grokwatch"

KINDS = ("scalars", "probes")
STATES = ("running", "completed", "failed", "preempted", "diverged")

_RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SHARD = re.compile(r"^(?P<kind>[a-z]+)-(?P<last>\d{9,})(?:-a(?P<attempt>\d{2,}))?\.arrow$")


def is_valid_run_id(run_id: str) -> bool:
    """A run id is a single safe path component: [A-Za-z0-9._-], not . or .."""
    return bool(_RUN_ID.match(run_id)) and run_id not in (".", "..")


def check_run_id(run_id: str) -> str:
    if not is_valid_run_id(run_id):
        raise ValueError(f"unsafe run id {run_id!r}: use only letters, digits, '.', '_' and '-'")
    return run_id


@dataclass(frozen=True, order=True)
class ShardName:
    """A parsed shard file name. Orders as a reader should apply shards."""

    attempt: int
    last_step: int
    kind: str

    @property
    def filename(self) -> str:
        suffix = f"-a{self.attempt:02d}" if self.attempt else ""
        return f"{self.kind}-{self.last_step:09d}{suffix}.arrow"

    @classmethod
    def parse(cls, name: str) -> "ShardName | None":
        m = _SHARD.match(name)
        if not m:
            return None
        return cls(attempt=int(m["attempt"] or 0), last_step=int(m["last"]), kind=m["kind"])


def run_dir(root: Path | str, sweep: str, run_id: str) -> Path:
    return Path(root) / sweep / check_run_id(run_id)
