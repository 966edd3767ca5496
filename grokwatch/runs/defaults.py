"""Defaults shared by the trainer, the watcher, the alarm daemon, the dashboard
and ``grokwatch sweep status``: one home, so that they cannot disagree.

Plain constants, no imports: the trainer reads them too (it already imports
:mod:`grokwatch.store`), and so may anything that must stay light.

Alarm thresholds are not here: they are data, in
``grokwatch/alerts/default_rules.toml`` (merged with a user's ``--rules``
file), and every view that highlights a signal reads the loaded rule.
"""

#: Seconds without a heartbeat (``status.json``) after which a running run is
#: *stalled* (DESIGN sections 2 and 4): the watcher, the ``stalled`` alarm,
#: the dashboard's state column and ``grokwatch sweep status`` all use it.
STALL_TIMEOUT = 600.0

# Phases (DESIGN section 4).
#: ``t_mem``: the first step with train_acc >= this.
MEM_TRAIN_ACC = 0.99
#: ``t_grok``: the first step at or after t_mem with val_acc >= this.
GROK_VAL_ACC = 0.95
#: *grokking*: val_acc past this on the way to t_grok.
GROKKING_VAL_ACC = 0.5
#: *anti-grokking*: after t_grok, val_acc below this while train_acc stays >= MEM_TRAIN_ACC.
ANTI_VAL_ACC = 0.5

__all__ = ["ANTI_VAL_ACC", "GROKKING_VAL_ACC", "GROK_VAL_ACC", "MEM_TRAIN_ACC", "STALL_TIMEOUT"]
