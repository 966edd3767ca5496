"""grokwatch: live monitoring and early warning for sweeps of grokking experiments.

The package root imports nothing heavy: ``import grokwatch`` must stay cheap for
the trainer and the headless alert daemon.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``grokwatch.init`` (grokwatch.integrations.track) for a user's own training loop, loaded on first use.
    if name in ("init", "Run", "model_norms"):
        from grokwatch.integrations import track

        return getattr(track, name)
    raise AttributeError(f"module 'grokwatch' has no attribute {name!r}")
