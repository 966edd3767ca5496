"""The grokking trainer: task (``a op b mod p``), model, one flat training loop
with on-device metric recording, probes, checkpoint/resume. Writes through
grokwatch.store only.

Entry points: ``python -m trainer`` (trainer/__main__.py) and
``trainer.train.train(TrainConfig) -> exit code``. This package root imports
nothing (torch loads with trainer.train).
"""
