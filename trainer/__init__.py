"""The grokking trainer: task (``a op b mod p``), model, one training loop
(trainer.loop) that takes a lone run's steps (trainer.train) or a pack's
(trainer.pack), on-device metric recording (trainer.recording), probes,
checkpoint/resume, stop signals (trainer.stopping). Writes through
grokwatch.store only.

Entry points: ``python -m trainer`` (trainer/cli.py), ``trainer.train.train(TrainConfig)``
and ``trainer.pack.train_pack([TrainConfig, ...])``, each returning an exit code.
This package root imports nothing (torch loads with trainer.train).
"""
