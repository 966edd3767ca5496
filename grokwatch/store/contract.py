"""The run contract: what ``run.json`` and ``status.json`` hold, as two typed dataclasses.

Every writer builds a :class:`RunConfig` (once, before step 1) and a
:class:`RunStatus` (at every heartbeat) and writes ``to_json()`` through
:class:`~grokwatch.store.RunWriter`: the trainer, ``grokwatch.init`` (the
tracking API) and the TensorBoard importer through it, the simulator. Every
reader (the watcher, the alarm daemon, the dashboard, the report, the
predictor, ``grokwatch sweep status``) reads them back with ``from_json`` (or
:meth:`RunConfig.read` / :meth:`RunStatus.read`) and uses the typed fields;
nobody looks a value up by guessing its key.

Both files carry ``contract_version`` (:data:`CONTRACT_VERSION`). A file
without one was written before the contract existed and is read once by the
old conventions (``total_steps``/``max_steps``/``num_steps`` for ``steps``,
``wd`` for ``weight_decay``, the value at the top level or one table down);
a file from a newer grokwatch, or with a field of the wrong type, is a
:class:`ContractError` whose message is one line naming the file and the field.

The JSON stays flat: the typed fields and ``contract_version`` sit beside the
writer's own keys (``extra``: the trainer's hyperparameters and derived
figures, the simulator's ``simulated`` block, an importer's provenance), so a
file is readable by a person and by older tools alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .atomic import read_json_any
from .layout import RUN_JSON, STATES, STATUS_JSON

#: The version of run.json and status.json this grokwatch writes, and the newest it reads.
CONTRACT_VERSION = 1

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ContractError(ValueError):
    """A run.json or status.json that breaks the contract; the message is one line."""


# -- field checks ---------------------------------------------------------------------


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(where: str, name: str, v: Any, kind: str) -> Any:
    """``v`` as the field's type, or ContractError. None passes (the field is unknown)."""
    if v is None:
        return None
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise ContractError(f"{where}: {name!r} must be an integer, got {_show(v)}")
        return int(v)
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ContractError(f"{where}: {name!r} must be a finite number, got {_show(v)}")
        return float(v)
    if kind == "str":
        if not isinstance(v, str):
            raise ContractError(f"{where}: {name!r} must be a string, got {_show(v)}")
        return v
    if kind == "map":
        if not isinstance(v, Mapping):
            raise ContractError(f"{where}: {name!r} must be a JSON object, got {_show(v)}")
        return MappingProxyType(dict(v))
    if kind == "maps":
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, Mapping) for x in v):
            raise ContractError(f"{where}: {name!r} must be a list of JSON objects, got {_show(v)}")
        return tuple(MappingProxyType(dict(x)) for x in v)
    raise AssertionError(kind)


def _version(where: str, obj: Mapping[str, Any]) -> int:
    """The file's contract version: 0 for a file written before the contract existed."""
    v = obj.get("contract_version")
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ContractError(f"{where}: 'contract_version' must be a positive integer, got {_show(v)}")
    if v > CONTRACT_VERSION:
        raise ContractError(
            f"{where}: written by a newer grokwatch (contract_version {v}; this one reads up to "
            f"{CONTRACT_VERSION}): upgrade grokwatch"
        )
    return v


def _typed(cls) -> dict[str, str]:
    return {f.name: f.metadata["kind"] for f in fields(cls) if "kind" in f.metadata}


def _f(kind: str, default: Any = None) -> Any:
    if kind == "map":
        return field(default_factory=lambda: _EMPTY, metadata={"kind": kind})
    if kind == "maps":
        return field(default=(), metadata={"kind": kind})
    return field(default=default, metadata={"kind": kind})


def _validate(obj, where: str) -> None:
    """Check and normalise the typed fields of a freshly built dataclass (frozen)."""
    for name, kind in _typed(type(obj)).items():
        object.__setattr__(obj, name, _check(where, name, getattr(obj, name), kind))
    extra = obj.extra
    if not isinstance(extra, Mapping):
        raise ContractError(f"{where}: 'extra' must be a mapping, got {_show(extra)}")
    clash = sorted(set(extra) & (set(_typed(type(obj))) | {"contract_version"}))
    if clash:
        raise ContractError(f"{where}: {clash[0]!r} is a field of the contract, not an extra key")
    object.__setattr__(obj, "extra", MappingProxyType(dict(extra)))
    v = obj.contract_version
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= CONTRACT_VERSION:
        raise ContractError(f"{where}: 'contract_version' must be 1..{CONTRACT_VERSION}, got {_show(v)}")


def _to_json(obj) -> dict[str, Any]:
    out = dict(obj.extra)
    for name in _typed(type(obj)):
        v = getattr(obj, name)
        if not obj._write_unset and (v is None or (isinstance(v, Mapping) and not v)):
            continue
        if isinstance(v, Mapping):
            v = dict(v)
        elif isinstance(v, tuple):
            v = [dict(x) if isinstance(x, Mapping) else x for x in v]
        out[name] = v
    out["contract_version"] = obj.contract_version
    return out


def _read(path: Path) -> Mapping[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing; ContractError when it is not one."""
    try:
        obj = read_json_any(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: unreadable ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(obj, Mapping):
        raise ContractError(f"{path}: not a JSON object")
    return obj


# -- run.json -------------------------------------------------------------------------

#: Names a file from before the contract used for a field (the first one wins).
_LEGACY_NAMES = {
    "steps": ("steps", "total_steps", "max_steps", "num_steps"),
    "weight_decay": ("weight_decay", "wd"),
}
#: Fields a file from before the contract may have held one table down (e.g. ``{"optimizer": {"weight_decay": 1}}``).
_LEGACY_NESTED = ("preset", "seed", "weight_decay", "steps", "checkpoint_every")


@dataclass(frozen=True)
class RunConfig:
    """``run.json``: a run's identity and configuration, written once before step 1.

    The typed fields are what readers use; ``extra`` is every other key as the
    writer wrote it (read-only). ``steps`` is the planned number of optimizer
    steps (None: open-ended); ``critical_weight_norm`` a run's own critical
    weight norm (else the preset's prior, grokwatch.runs.presets, applies);
    ``meta`` what :class:`~grokwatch.store.RunWriter` adds: host, created
    (UTC), slurm ids, code_version, and the packed trainer's ``pack``.
    ``lr`` is the (peak) learning rate: with the weight decay it sets the
    time scale the onset predictor's growth model uses.
    """

    run_id: str | None = _f("str")
    sweep: str | None = _f("str")
    preset: str | None = _f("str")
    seed: int | None = _f("int")
    weight_decay: float | None = _f("float")
    lr: float | None = _f("float")
    steps: int | None = _f("int")
    checkpoint_every: int | None = _f("int")
    critical_weight_norm: float | None = _f("float")
    meta: Mapping[str, Any] = _f("map")
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    contract_version: int = CONTRACT_VERSION

    _write_unset = False  # a field that is not set is left out (a tracked loop may not know its seed)

    def __post_init__(self) -> None:
        _validate(self, RUN_JSON)

    @classmethod
    def from_json(cls, obj: Any, where: str = RUN_JSON) -> RunConfig:
        """Read a run.json object; ContractError (one line, naming ``where``) when it breaks the contract."""
        if not isinstance(obj, Mapping):
            raise ContractError(f"{where}: not a JSON object")
        version = _version(where, obj)
        rest = {k: v for k, v in obj.items() if k != "contract_version"}
        kw: dict[str, Any] = {}
        typed = _typed(cls)
        if version == 0:  # written before the contract: its old spellings, once, here
            for name in typed:
                for alias in _LEGACY_NAMES.get(name, (name,)):
                    if alias in rest:  # an old spelling stays in extra too, as the writer wrote it
                        kw[name] = rest.pop(alias) if alias == name else rest[alias]
                        break
                else:
                    if name in _LEGACY_NESTED:
                        kw[name] = _nested(rest, _LEGACY_NAMES.get(name, (name,)), typed[name])
        else:
            for name in typed:
                if name in rest:
                    kw[name] = rest.pop(name)
        for name, kind in typed.items():
            kw[name] = _check(where, name, kw.get(name), kind)
        return cls(**{k: v for k, v in kw.items() if v is not None}, extra=rest)

    @classmethod
    def read(cls, run_dir: Path | str) -> RunConfig | None:
        """``<run_dir>/run.json``; None when there is none yet, ContractError when it is bad."""
        path = Path(run_dir) / RUN_JSON
        obj = _read(path)
        return None if obj is None else cls.from_json(obj, str(path))

    @classmethod
    def coerce(cls, config: RunConfig | Mapping[str, Any] | None) -> RunConfig:
        """A RunConfig as it is, a run.json object read with :meth:`from_json`, None as an empty config."""
        if isinstance(config, RunConfig):
            return config
        return cls() if config is None else cls.from_json(config)

    def to_json(self) -> dict[str, Any]:
        """The run.json object: the writer's extra keys, the typed fields that are set, the version."""
        return _to_json(self)

    def replace(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)


def _nested(cfg: Mapping[str, Any], names: tuple[str, ...], kind: str) -> Any:
    """An old file's value one table down, when it has the field's type (a guess that does not fit is not taken)."""
    for v in cfg.values():
        if isinstance(v, Mapping):
            for n in names:
                if n in v:
                    try:
                        return _check("", n, v[n], kind)
                    except ContractError:
                        return None
    return None


# -- status.json ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    """``status.json``: where a run is, rewritten atomically at every heartbeat.

    ``state`` is one of :data:`grokwatch.store.layout.STATES`; ``last_step``
    the newest step written; ``heartbeat`` / ``heartbeat_unix`` when (UTC text
    / Unix seconds); ``attempt`` the attempt now writing (0 first, one more per
    resume; ``restarts`` the same count) and ``attempts`` one record per
    attempt (``attempt``, ``start_step``, ``started``, ``slurm``); ``message``
    why it stopped. ``extra`` holds what else the writer reports, e.g. the
    trainer's ``t_mem``, ``t_grok`` and ``ms_per_step``.
    """

    state: str | None = _f("str")
    last_step: int | None = _f("int")
    heartbeat: str | None = _f("str")
    heartbeat_unix: float | None = _f("float")
    pid: int | None = _f("int")
    host: str | None = _f("str")
    slurm: Mapping[str, Any] = _f("map")
    attempt: int | None = _f("int")
    restarts: int | None = _f("int")
    attempts: tuple[Mapping[str, Any], ...] = _f("maps")
    message: str | None = _f("str")
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    contract_version: int = CONTRACT_VERSION

    _write_unset = True  # every field, null when unknown

    def __post_init__(self) -> None:
        _validate(self, STATUS_JSON)
        if self.state is not None and self.state not in STATES:
            raise ContractError(f"{STATUS_JSON}: 'state' must be one of {', '.join(STATES)}, got {_show(self.state)}")

    @classmethod
    def from_json(cls, obj: Any, where: str = STATUS_JSON) -> RunStatus:
        """Read a status.json object; ContractError (one line, naming ``where``) when it breaks the contract."""
        if not isinstance(obj, Mapping):
            raise ContractError(f"{where}: not a JSON object")
        _version(where, obj)  # the fields kept their names: only a newer version is refused
        typed = _typed(cls)
        kw = {name: _check(where, name, obj.get(name), kind) for name, kind in typed.items()}
        state = kw.get("state")
        if state is not None and state not in STATES:
            raise ContractError(f"{where}: 'state' must be one of {', '.join(STATES)}, got {_show(state)}")
        rest = {k: v for k, v in obj.items() if k not in typed and k != "contract_version"}
        return cls(**{k: v for k, v in kw.items() if v is not None}, extra=rest)

    @classmethod
    def read(cls, run_dir: Path | str) -> RunStatus | None:
        """``<run_dir>/status.json``; None when there is none yet, ContractError when it is bad."""
        path = Path(run_dir) / STATUS_JSON
        obj = _read(path)
        return None if obj is None else cls.from_json(obj, str(path))

    def to_json(self) -> dict[str, Any]:
        """The status.json object."""
        return _to_json(self)

    def replace(self, **changes: Any) -> RunStatus:
        return replace(self, **changes)


__all__ = ["CONTRACT_VERSION", "ContractError", "RunConfig", "RunStatus"]
