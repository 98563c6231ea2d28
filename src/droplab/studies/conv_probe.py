"""The note's mechanism, measured on trained CNNs: how correlated neighbouring positions of
a feature map are, and how much of a dropped activation its neighbours still carry.

For every conv layer l of a net, ``h`` are its post-activation feature maps on the
validation inputs, shape (n, C, *spatial).

- **Lag-1 autocorrelation** ``ac1``: per channel c, the Pearson correlation of
  ``h[:, c, i]`` and ``h[:, c, i + 1]`` over examples and positions (each spatial axis in
  turn, averaged), then averaged over channels whose maps vary.
- **Linear recovery** ``probe_<mask>``: a unit ``h[:, c, p]`` at an interior position p is
  predicted by least squares from what the next layers still see when a mask of that kind
  drops it, within a window of radius ``W`` (2) around p:

  * ``element`` (element-wise dropout drops the unit alone): the same channel at every
    other window position, and every other channel at p;
  * ``block`` (DropBlock, a block of ``BLOCK`` = 3 positions per axis centred on p): the
    same channel outside the block, and the other channels at p;
  * ``spatial`` (SpatialDropout drops the whole channel): the other channels at p only.

  The other channels see the same input patch, so they carry part of the unit under
  every mask; the note's claim is about the difference the same channel's neighbours
  make (element minus block, element minus spatial).

  The probe is fitted on the first half of the examples and scored on the second:
  ``R^2 = 1 - sum SSE / sum SST`` pooled over channels (held-out fraction of the unit's
  variance recovered; 0 = nothing, 1 = all). If the note is right, element-wise R^2 is
  high and the structured masks' R^2 is much lower.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

__all__ = ["BLOCK", "MASKS", "WINDOW", "feature_maps", "lag1", "mechanism", "recovery"]

WINDOW = 2  # radius of the probe's window (positions per axis)
BLOCK = 3  # DropBlock's block, centred on the dropped unit
MASKS = ("element", "block", "spatial")
_MAX_ROWS = 4000  # (example, position) samples per probe
_MAX_TARGETS = 8  # target channels per layer


@torch.no_grad()
def feature_maps(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Post-activation maps of every conv layer of ``module`` (a ``models.build`` CNN in
    eval mode) on ``x``: a list of (n, C, *spatial) tensors, one per conv layer."""
    layers = list(module.children()) if isinstance(module, nn.Sequential) else []
    acts = [
        layers[i + 1] for i, m in enumerate(layers[:-1]) if isinstance(m, (nn.Conv1d, nn.Conv2d))
    ]
    if not acts:
        raise ValueError("feature_maps needs a models.build CNN (an nn.Sequential with convs)")
    out: list[torch.Tensor] = []
    hooks = [a.register_forward_hook(lambda _m, _i, o: out.append(o.detach())) for a in acts]
    try:
        module.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def lag1(h: torch.Tensor) -> float:
    """Mean over channels (and spatial axes) of the lag-1 autocorrelation of ``h``
    (n, C, *spatial); NaN when no channel varies or a map has one position."""
    hc = h.double() - h.double().mean(dim=(0, *range(2, h.dim())), keepdim=True)
    vals = []
    for ax in range(2, h.dim()):
        if h.shape[ax] < 2:
            continue
        a, b = hc.narrow(ax, 0, h.shape[ax] - 1), hc.narrow(ax, 1, h.shape[ax] - 1)
        dims = (0, *range(2, h.dim()))
        num = (a * b).sum(dims)
        den = torch.sqrt((a * a).sum(dims) * (b * b).sum(dims))
        ok = den > 1e-12
        if ok.any():
            vals.append(float((num[ok] / den[ok]).mean()))
    return float(np.mean(vals)) if vals else math.nan


def _windows(h: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """(rows, C, offsets) values of every window of radius WINDOW around interior
    positions, rows = (example, position) pairs ordered example-major; and the offsets."""
    d = h.dim() - 2
    offs = list(itertools.product(range(-WINDOW, WINDOW + 1), repeat=d))
    sp = h.shape[2:]
    if any(s < 2 * WINDOW + 1 for s in sp):
        return h.new_zeros((0, h.shape[1], len(offs))), offs
    inner = [range(WINDOW, s - WINDOW) for s in sp]
    cols = []
    for o in offs:
        sl = [slice(None), slice(None)] + [
            slice(r.start + oi, r.stop + oi) for r, oi in zip(inner, o)
        ]
        cols.append(h[tuple(sl)].reshape(h.shape[0], h.shape[1], -1))  # (n, C, P)
    v = torch.stack(cols, -1)  # (n, C, P, offsets)
    return v.permute(0, 2, 1, 3).reshape(-1, h.shape[1], len(offs)), offs


def recovery(h: torch.Tensor) -> dict[str, float]:
    """Held-out R^2 of each mask's linear probe (module docstring) on maps ``h``
    (n, C, *spatial), over at most ``_MAX_TARGETS`` evenly spaced channels that vary; NaN
    where the map is smaller than the window.

    Per target channel c the variables are c's window and the other channels at the
    centre (plus a constant); with their second moments ``M_a`` on the fitting half and
    ``M_b`` on the scoring half, a mask's probe over the variables S it leaves solves
    ``M_a[S, S] w = M_a[S, t]`` (a tiny ridge for stability), and the scoring half's
    squared error is ``w' M_b[S, S] w - 2 w' M_b[S, t] + M_b[t, t]``."""
    v, offs = _windows(h.double())
    if v.shape[0] < 8:
        return {m: math.nan for m in MASKS}
    if v.shape[0] > _MAX_ROWS:  # evenly spaced rows, example-major order kept
        v = v[:: -(-v.shape[0] // _MAX_ROWS)]
    rows, C, O = v.shape  # noqa: E741
    half = rows // 2
    centre = offs.index(tuple([0] * (h.dim() - 2)))
    near = {i for i, o in enumerate(offs) if all(abs(x) <= BLOCK // 2 for x in o)}
    drop = {"element": {centre}, "block": near, "spatial": set(range(O))}
    yb = v[half:, :, centre]  # (rows - half, C)
    sst = ((yb - yb.mean(0)) ** 2).sum(0)  # (C,)
    live = torch.nonzero((sst > 1e-12) & (v[:half, :, centre].var(0) > 1e-12)).flatten()
    if len(live) > _MAX_TARGETS:
        live = live[torch.linspace(0, len(live) - 1, _MAX_TARGETS).round().long()]
    sse = dict.fromkeys(MASKS, 0.0)
    total = 0.0
    for c in live.tolist():
        others = [k for k in range(C) if k != c]
        flat = torch.cat(
            [v[:, c, :], v[:, others, centre], torch.ones(rows, 1, dtype=v.dtype)], 1
        )  # (rows, O + C): c's window, the other channels at the centre, a constant
        Ma, Mb = flat[:half].T @ flat[:half], flat[half:].T @ flat[half:]
        rest = list(range(O, O + C))
        for mask in MASKS:
            S = [i for i in range(O) if i not in drop[mask]] + rest
            A = Ma[S][:, S]
            A = A + 1e-8 * float(A.diagonal().mean()) * torch.eye(len(S), dtype=A.dtype)
            w = torch.linalg.solve(A, Ma[S, centre])
            sse[mask] += float(w @ Mb[S][:, S] @ w - 2 * w @ Mb[S, centre] + Mb[centre, centre])
        total += float(sst[c])
    return {m: 1.0 - sse[m] / total if total > 0 else math.nan for m in MASKS}


def mechanism(module: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The measurements of one trained CNN on inputs ``x``: ``ac1_l{j}`` and
    ``probe_{mask}_l{j}`` per conv layer j, and their means over layers (``ac1``,
    ``probe_{mask}``, NaN-skipping)."""
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {k: [] for k in ("ac1", *(f"probe_{m}" for m in MASKS))}
    for j, h in enumerate(feature_maps(module, x)):
        a = lag1(h)
        out[f"ac1_l{j}"] = a
        per["ac1"].append(a)
        for m, r in recovery(h).items():
            out[f"probe_{m}_l{j}"] = r
            per[f"probe_{m}"].append(r)
    for k, vals in per.items():
        finite = [v for v in vals if math.isfinite(v)]
        out[k] = float(np.mean(finite)) if finite else math.nan
    return out
