"""grokwatch: live monitoring and early warning for sweeps of grokking experiments.

The package root imports nothing heavy: ``import grokwatch`` must stay cheap for
the trainer and the headless alert daemon.
"""

__version__ = "0.1.0"
