"""What grokwatch knows of the trainer's presets, measured on real runs.

``grokwatch/priors/<preset>.json`` (package data, written by
``bench/evidence.py --write-priors``) summarises the evidence sweep's runs of
a preset: how many, the critical weight norm (the weight norm at t_grok, by
weight decay and over all), and the plateau lengths. The watcher turns the
critical norm into the ``weight_norm_ratio`` signal; the predictor reads the
runs themselves from ``<preset>.arrow`` beside it (grokwatch.predict.priors).

Pure data access; no numpy at import.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("grokwatch")

PRIORS_DIR = Path(__file__).parents[1] / "priors"  # data, shipped beside the package


@functools.lru_cache(maxsize=16)
def preset_facts(preset: str | None) -> dict[str, Any] | None:
    """The summary of ``preset`` (see the module doc), or None when none is shipped."""
    if not preset or not all(c.isalnum() or c in "._-" for c in preset):
        return None
    path = PRIORS_DIR / f"{preset}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("preset facts %s unreadable (%s); ignored", path, exc)
        return None


def critical_norm(preset: str | None, weight_decay: float | None) -> float | None:
    """The median weight norm at t_grok of the preset's evidence runs of this
    weight decay (when at least 3 of them grokked), else of all its runs; None
    when the preset has no shipped facts."""
    facts = preset_facts(preset)
    if not facts:
        return None
    wc = facts.get("w_crit") or {}
    if weight_decay is not None:
        for key, v in (wc.get("by_weight_decay") or {}).items():
            try:
                same = math.isclose(float(key), float(weight_decay), rel_tol=1e-6)
            except (TypeError, ValueError):
                continue
            if same and v.get("n", 0) >= 3 and v.get("median"):
                return float(v["median"])
    allv = wc.get("all") or {}
    return float(allv["median"]) if allv.get("median") else None
