"""The shard store: the data contract between trainer and watcher (DESIGN section 2).

Light on purpose: numpy and pyarrow only, so the trainer, the headless alert
daemon and the dashboard all share it.
"""

from .atomic import atomic_write_bytes, atomic_write_json, read_json
from .contract import CONTRACT_VERSION, ContractError, RunConfig, RunStatus
from .layout import (
    CHECKPOINT,
    KINDS,
    RUN_JSON,
    SHARDS_DIR,
    SNAPSHOTS_DIR,
    STATUS_JSON,
    WATCHER_DIR,
    ShardName,
    check_run_id,
    is_valid_run_id,
    run_dir,
    run_id_for,
)
from .reader import Columns, Delta, RunReader, list_runs, merge_newest, read_run_config, read_status
from .writer import RunWriter, columns_to_ipc, utcnow

__all__ = [
    "CHECKPOINT",
    "CONTRACT_VERSION",
    "KINDS",
    "RUN_JSON",
    "SHARDS_DIR",
    "SNAPSHOTS_DIR",
    "STATUS_JSON",
    "WATCHER_DIR",
    "Columns",
    "ContractError",
    "Delta",
    "RunConfig",
    "RunReader",
    "RunStatus",
    "RunWriter",
    "ShardName",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_run_id",
    "columns_to_ipc",
    "is_valid_run_id",
    "list_runs",
    "merge_newest",
    "read_json",
    "read_run_config",
    "read_status",
    "run_dir",
    "run_id_for",
    "utcnow",
]
