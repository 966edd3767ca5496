"""H0 topology of a 2-D slice of the training-loss landscape.

Source: "Grokking Topology" (persistent homology of loss-landscape slices
across the grokking transition): a G x G slice of the training loss around the
current parameters along two random filter-normalised directions (H. Li, Z.
Xu, G. Taylor, C. Studer & T. Goldstein, "Visualizing the Loss Landscape of
Neural Nets", NeurIPS 2018), the H0 persistence of a filtration built on it,
and four summaries of the finite bars.

Three filtrations of the same slice (:data:`CONSTRUCTIONS`, :func:`h0_diagram`):

- ``sublevel`` -- the seed study's: sublevel sets of the loss image
  (lower-star filtration, ripser: C. Tralie, N. Saul & R. Bar-On, JOSS 2018).
  On real grokking runs it is degenerate: the slice is one basin, so no finite
  bar exists (docs/topology.md has the measurements).
- ``superlevel`` -- sublevel sets of the negated image (peaks instead of basins).
- ``rips`` -- Vietoris-Rips H0 of the slice's graph as a point cloud, points
  (a/span, b/span, ln L) over the grid (single linkage: the finite bars are the
  edges of the Euclidean minimum spanning tree, all born at 0). The bars
  measure how steeply ln L changes between neighbouring grid points, so they
  see the shape of the bowl, not only how many bowls there are. This is the
  construction the evidence sweep chose (docs/topology.md).

numpy only at import; ripser and torch are imported inside the functions that
need them.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from observables._arrays import to_numpy


@dataclass(frozen=True)
class H0Summary:
    """The four H0 summaries (see :func:`h0_summaries`)."""

    total: float
    effective_count: float
    median: float
    entropy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def h0_summaries(diagram) -> H0Summary:
    """Summaries of an H0 persistence diagram (n x 2 array of birth, death).

    Over the finite bars with positive lifetime l = death - birth (the
    infinite bar of the global minimum and zero-length bars are ignored):

    - ``total`` = sum(l)                       (total persistence)
    - ``effective_count`` = (sum l)^2 / sum(l^2)  (effective number of
      features; k equal bars give k)
    - ``median`` = median(l)
    - ``entropy`` = -sum(p ln p), p = l / sum(l)  (persistence entropy; k
      equal bars give ln k)

    An empty diagram (or one with no finite positive bar) gives all zeros.
    Source: "Grokking Topology"; persistence entropy after Chintakunta et al.
    (2015).
    """
    d = to_numpy(diagram).reshape(-1, 2)
    life = d[:, 1] - d[:, 0]
    life = life[np.isfinite(life) & (life > 0)]
    if life.size == 0:
        return H0Summary(0.0, 0.0, 0.0, 0.0)
    total = float(np.sum(life))
    p = life / total
    return H0Summary(
        total=total,
        effective_count=total * total / float(np.sum(life * life)),
        median=float(np.median(life)),
        entropy=float(-np.sum(p * np.log(p))),
    )


def landscape_h0(image) -> np.ndarray:
    """H0 persistence diagram (n x 2: birth, death; the bar of the global
    minimum has death = inf) of the sublevel-set filtration of a 2-D image,
    by ripser's lower-star filtration (``ripser.lower_star_img``: each pixel
    enters at its value, neighbours are the 8 surrounding pixels, an edge
    enters at the larger of its two values). A bar is born at a local minimum
    (basin) and dies at the saddle where its basin merges into an older one.

    Non-finite pixels (diverged loss) are set to the largest finite value, so
    they are the highest terrain; an image with no finite pixel gives an
    empty diagram.
    """
    img = to_numpy(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    finite = np.isfinite(img)
    if not finite.any():
        return np.zeros((0, 2))
    if not finite.all():
        img = np.where(finite, img, img[finite].max())
    from ripser import lower_star_img

    return np.asarray(lower_star_img(img), dtype=np.float64)


#: The H0 constructions on a loss slice (see the module doc); "rips" is the default.
CONSTRUCTIONS = ("rips", "sublevel", "superlevel")
DEFAULT_CONSTRUCTION = "rips"


def rips_h0(image, span: float = 1.0) -> np.ndarray:
    """H0 persistence diagram of the Vietoris-Rips filtration of the point
    cloud (a_i / span, b_j / span, ln L_ij) of a G x G loss image sampled on
    a = b = linspace(-span, span, G) (so the plane coordinates lie in
    [-1, 1] whatever the span). Rips H0 is single linkage: every point is
    born at 0 and the G^2 - 1 finite bars die at the edge lengths of the
    Euclidean minimum spanning tree (scipy), plus one infinite bar. Non-finite
    or non-positive losses are clamped to the image's finite range first.
    """
    img = to_numpy(image).astype(np.float64)
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square 2-D image, got shape {img.shape}")
    finite = np.isfinite(img) & (img > 0)
    if not finite.any():
        return np.zeros((0, 2))
    lo, hi = img[finite].min(), img[finite].max()
    img = np.where(finite, img, hi)
    z = np.log(np.clip(img, lo, None))
    g = img.shape[0]
    c = np.linspace(-1.0, 1.0, g) if g > 1 else np.zeros(1)
    aa, bb = np.meshgrid(c, c, indexing="ij")
    pts = np.column_stack([aa.ravel(), bb.ravel(), z.ravel()])
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial.distance import pdist, squareform

    dist = squareform(pdist(pts))
    mst = minimum_spanning_tree(dist).tocoo()
    deaths = np.sort(mst.data)
    out = np.zeros((len(deaths) + 1, 2))
    out[:-1, 1] = deaths
    out[-1, 1] = np.inf
    return out


def grid_sublevel_h0(values) -> np.ndarray:
    """H0 diagram of the sublevel-set (lower-star) filtration of a function
    sampled on a regular grid of any dimension: each grid point enters at its
    value, neighbours are the 3^d - 1 surrounding points, and by the elder
    rule the younger of two merging components dies at the merge value. In
    2-D this is :func:`landscape_h0`; in d dimensions along the top Hessian
    eigenvectors it is the merge tree's persistence that Landscaper (Chen et
    al.) and Xie, Geniesse et al. 2024 read off a loss landscape. Union-find,
    pure numpy; non-finite values are set to the largest finite one.
    """
    import itertools

    v = to_numpy(values).astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros((0, 2))
    v = np.where(finite, v, v[finite].max())
    shape = v.shape
    flat = v.ravel()
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=v.ndim) if any(o)]
    parent = np.full(flat.size, -1, dtype=np.int64)
    birth = np.zeros(flat.size)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    bars = []
    for i in np.argsort(flat, kind="stable"):
        i = int(i)
        parent[i] = i
        birth[i] = flat[i]
        idx = np.unravel_index(i, shape)
        for o in offsets:
            nb = tuple(a + b for a, b in zip(idx, o))
            if any(c < 0 or c >= n for c, n in zip(nb, shape)):
                continue
            j = int(np.ravel_multi_index(nb, shape))
            if parent[j] < 0:
                continue
            ri, rj = find(i), find(j)
            if ri == rj:
                continue
            young, old = (ri, rj) if birth[ri] > birth[rj] else (rj, ri)
            bars.append((birth[young], flat[i]))
            parent[young] = old
    bars.append((float(flat.min()), np.inf))
    return np.asarray(bars, dtype=np.float64)


def h0_diagram(image, construction: str = DEFAULT_CONSTRUCTION, span: float = 1.0) -> np.ndarray:
    """H0 diagram of a loss slice by one of :data:`CONSTRUCTIONS`:
    ``sublevel`` (:func:`landscape_h0`, the seed's), ``superlevel``
    (:func:`landscape_h0` of the negated image) or ``rips`` (:func:`rips_h0`)."""
    if construction == "sublevel":
        return landscape_h0(image)
    if construction == "superlevel":
        return landscape_h0(-to_numpy(image).astype(np.float64))
    if construction == "rips":
        return rips_h0(image, span)
    raise ValueError(f"unknown H0 construction {construction!r}; choose from {', '.join(CONSTRUCTIONS)}")


# --------------------------------------------------------------------------
# Loss-landscape slice (torch)
# --------------------------------------------------------------------------


def module_loss(model, loss_fn, inputs, targets):
    """Build ``(loss_of, params)`` for :func:`loss_slice` from an ``nn.Module``.

    ``loss_of(p) = loss_fn(torch.func.functional_call(model, p, (inputs,)),
    targets)`` evaluates the model with the parameter dict ``p`` in place of
    its own; ``params`` is the model's named parameters, detached. Buffers
    are the model's own. The model is evaluated in whatever mode it is in
    (call ``model.eval()`` first if dropout should be off).
    """
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of(p):
        return loss_fn(functional_call(model, p, (inputs,)), targets)

    return loss_of, params


def filter_normalized_direction(params: dict, generator) -> dict:
    """A random direction d (one tensor per parameter) filter-normalised as in
    Li et al. 2018: d ~ N(0, I), then for each filter (slice along dim 0 of a
    parameter with >= 2 dims: a row of a linear layer or embedding, an output
    channel of a conv) d_f <- d_f |theta_f| / |d_f|. One-dimensional
    parameters (biases, norm scales) get d = 0, Li et al.'s ``ignore='biasbn'``
    option.
    """
    import torch

    out = {}
    for name, p in params.items():
        if p.dim() < 2:
            out[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        dims = tuple(range(1, p.dim()))
        scale = p.norm(dim=dims, keepdim=True) / (d.norm(dim=dims, keepdim=True) + 1e-10)
        out[name] = d * scale
    return out


def loss_slice(
    loss_of,
    params: dict,
    *,
    grid: int = 25,
    span: float = 1.0,
    seed: int = 0,
    chunk: int = 16,
    vectorize: bool = True,
) -> np.ndarray:
    """G x G image of the loss on a 2-D slice around ``params``.

    ``img[i, j] = loss_of(theta + a_i d1 + b_j d2)`` with a, b =
    linspace(-span, span, grid), theta = ``params`` (dict name -> tensor) and
    d1, d2 two random filter-normalised directions drawn from a CPU
    ``torch.Generator`` seeded with ``seed`` (same seed, same directions on
    any device; :func:`filter_normalized_direction`; Li et al. 2018).
    ``loss_of(p) -> scalar tensor`` is any function of a parameter dict, e.g.
    from :func:`module_loss` (an ``nn.Module`` and a ``loss(outputs,
    targets)``) or a closure of your own.

    Evaluation is under ``torch.no_grad``, batched: ``torch.vmap`` over
    ``chunk`` grid points at a time (memory ~ chunk x one forward pass). If
    ``loss_of`` cannot be vmapped (data-dependent Python control flow,
    ``.item()``, in-place ops on inputs) it falls back, with a warning, to one
    call per grid point; ``vectorize=False`` asks for that directly.
    """
    import torch

    if grid < 2:
        raise ValueError("grid must be >= 2")
    with torch.no_grad():
        params = {k: v.detach() for k, v in params.items()}
        gen = torch.Generator().manual_seed(int(seed))
        d1 = filter_normalized_direction(params, gen)
        d2 = filter_normalized_direction(params, gen)
        any_p = next(iter(params.values()))
        # exact 0 at the centre for odd grids: span * (2k - (G-1)) / (G-1)
        steps = torch.arange(grid, dtype=torch.float64)
        coords = span * (2.0 * steps - (grid - 1)) / (grid - 1)
        aa, bb = torch.meshgrid(coords, coords, indexing="ij")
        aa = aa.reshape(-1).to(any_p.dtype).to(any_p.device)
        bb = bb.reshape(-1).to(any_p.dtype).to(any_p.device)

        def one(a, b):
            return loss_of({k: p + a.to(p.dtype) * d1[k] + b.to(p.dtype) * d2[k] for k, p in params.items()})

        values = None
        if vectorize:
            from observables._torchutil import math_attention

            batched = torch.vmap(one, in_dims=(0, 0))
            try:
                # results stay on the device: one host copy at the end; fused
                # attention kernels have no batching rule, the math kernel has
                with math_attention():
                    values = torch.cat(
                        [batched(aa[s : s + chunk], bb[s : s + chunk]).reshape(-1) for s in range(0, aa.numel(), chunk)]
                    )
            except (RuntimeError, NotImplementedError) as err:  # loss_of is not vmappable
                warnings.warn(f"loss_slice: vmap failed ({err}); evaluating point by point", stacklevel=2)
        if values is None:
            values = torch.stack([torch.as_tensor(one(aa[i], bb[i])).reshape(()) for i in range(aa.numel())])
        return values.double().cpu().reshape(grid, grid).numpy()


def h0_of_model(
    loss_of,
    params: dict,
    *,
    grid: int = 25,
    span: float = 1.0,
    seed: int = 0,
    chunk: int = 16,
    construction: str = DEFAULT_CONSTRUCTION,
) -> H0Summary:
    """The four H0 summaries (:func:`h0_summaries`) of the loss slice at the
    current point: ``h0_summaries(h0_diagram(loss_slice(...), construction, span))``.
    Arguments as :func:`loss_slice` and :func:`h0_diagram`."""
    img = loss_slice(loss_of, params, grid=grid, span=span, seed=seed, chunk=chunk)
    return h0_summaries(h0_diagram(img, construction, span))


__all__ = [
    "CONSTRUCTIONS",
    "DEFAULT_CONSTRUCTION",
    "H0Summary",
    "grid_sublevel_h0",
    "h0_diagram",
    "rips_h0",
    "filter_normalized_direction",
    "h0_of_model",
    "h0_summaries",
    "landscape_h0",
    "loss_slice",
    "module_loss",
]
