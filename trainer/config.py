"""The training configuration: :class:`TrainConfig`, its presets and its checks.

The fields, presets, checks and the command line's resolution live in
:mod:`grokwatch.runs.training` (light: ``grokwatch sweep plan`` checks a sweep
with them on a login node without torch); this module adds what needs the
model: :meth:`TrainConfig.model_config` and the parameter count.

The whole config goes into ``run.json`` as the run contract's
:class:`grokwatch.store.RunConfig` (:meth:`TrainConfig.to_run_config`, through
RunWriter) and into every checkpoint; :meth:`TrainConfig.to_dict` adds the
derived figures a reader needs (``n_params``, ``vocab_size``, ``n_train``,
``n_val``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from grokwatch.runs.training import (
    N_CTX,
    PRESETS,
    ConfigError,
    TrainingConfig,
    check_fresh_run,
    vocab_size,
)

from .model import ModelConfig, count_params

# Fields that fix the trajectory: a resumed run must keep them.
IDENTITY_FIELDS = (
    "op",
    "p",
    "train_frac",
    "seed",
    "n_layers",
    "d_model",
    "n_heads",
    "d_mlp",
    "lr",
    "beta1",
    "beta2",
    "weight_decay",
    "warmup",
)


class TrainConfig(TrainingConfig):
    """:class:`grokwatch.runs.training.TrainingConfig` with the model it describes."""

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size(self.p),
            n_ctx=N_CTX,
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_mlp=self.d_mlp,
        )

    def probe_names(self) -> Collection[str]:
        from .probes import PROBES  # the registry (torch is imported already)

        return tuple(PROBES)

    @property
    def n_params(self) -> int:
        return count_params(self.model_config())

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able data, with the derived figures (``n_params`` among them)."""
        return {**super().to_dict(), "n_params": self.n_params}


__all__ = ["IDENTITY_FIELDS", "PRESETS", "ConfigError", "TrainConfig", "check_fresh_run"]
