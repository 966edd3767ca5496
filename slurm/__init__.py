"""Sweep planning and submission (job-array sbatch script) and queue state
(squeue/sacct, locally or over SSH). Pure stdlib: no grokwatch, no UI.

- :mod:`slurm.plan`: options -> runs -> array tasks -> manifest (``sweep.json``)
- :mod:`slurm.script`: the bash batch script (requeue, USR1 before the limit)
- :mod:`slurm.submit`: ``sbatch --parsable``
- :mod:`slurm.queue`: :class:`~slurm.queue.QueueState` (batched, cached squeue/sacct)
- :mod:`slurm.states`: :func:`~slurm.states.display_state`
"""
