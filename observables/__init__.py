"""Pure signal math for grokwatch: each observable is a function of arrays (or,
where it must evaluate a model, of a loss closure and a parameter dict), with
its definition and source paper in its docstring. No I/O, no UI, nothing from
the rest of the project.

Modules (import the one you need; this package root imports nothing heavy,
and torch is imported only inside the functions that evaluate a model):

- ``observables.htsr``        HTSR power-law alpha of a weight matrix's ESD and
                              correlation traps (WeightWatcher conventions).
- ``observables.topology``    H0 persistence of a 2-D loss-landscape slice and
                              its four summaries ("Grokking Topology").
- ``observables.gai``         Gradient Acceleration Index and its causal spikes.
- ``observables.spectral``    Hjorth parameters and the early-loss spectral
                              signature (Notsawo et al.).
- ``observables.commutator``  commutator defect of two half-batch gradient steps
                              and its share outside the trajectory's PCA subspace.
- ``observables.rank``        effective rank (Roy & Vetterli 2007).
- ``observables.curvature``   Hessian extreme eigenvalues (Lanczos) and
                              Hutchinson trace.
- ``observables.trajectory``  update cosine, top-k PCA variance share, weight norms.
"""

__all__ = [
    "commutator",
    "curvature",
    "gai",
    "htsr",
    "rank",
    "spectral",
    "topology",
    "trajectory",
]
