"""Names on disk: the one place that knows the layout of DESIGN section 2.

```
<root>/<sweep>/sweep.json   the sweep manifest: every planned run (``grokwatch sweep plan``, the demo)
<root>/<sweep>/<run_id>/    run id ``wd<weight decay>-s<seed:02d>`` (:func:`run_id_for`)
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
MANIFEST = "sweep.json"  # written by `grokwatch sweep plan|submit` (slurm.plan) and the demo

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
    def parse(cls, name: str) -> ShardName | None:
        m = _SHARD.match(name)
        if not m:
            return None
        return cls(attempt=int(m["attempt"] or 0), last_step=int(m["last"]), kind=m["kind"])


def run_id_for(weight_decay: float, seed: int) -> str:
    """The one name of the run with this weight decay and seed: ``wd0.3-s07``, ``wd1.0-s00``.

    The weight decay is written as the shortest text that reads back as the same
    float (``repr``: 0.1, 1.0, 1e-05), so no two weight decays share a name.
    Every place that names runs (``grokwatch sweep plan`` through
    :func:`slurm.plan.plan_runs`, the packed trainer, the demo, the simulator)
    goes through here, so a run has the same id in every view.
    """
    return check_run_id(f"wd{float(weight_decay)!r}-s{int(seed):02d}")


def run_dir(root: Path | str, sweep: str, run_id: str) -> Path:
    return Path(root) / sweep / check_run_id(run_id)
