"""Batched dropout for the fast path: K members, each with its own masks stream.

Everything random in a batched step goes through :func:`batched_dropout`. Two mask
sources, chosen by ``backend``:

- ``"kernel"`` (default when :mod:`droplab.kernels` imports): counter-based masks,
  ``kernels.bernoulli/gaussian(x, ..., member_seeds=derive(seed, stream), offset=counter
  * n_slots + slot)``; nothing is stored for backward, the mask is regenerated.
- ``"torch"``: per-member ``torch.Generator`` streams, 16 random bits per unit.

Reproducibility contract: member k's masks depend only on its own seed and on the shapes
(batch size, widths), never on the other members, so member k trained alone (K=1) sees
exactly the masks it sees in a batch. Members whose rate is 0 for a slot draw nothing.
"""

from __future__ import annotations

import math

import torch

from droplab import rng

try:
    from droplab import kernels as _kernels
except ImportError:  # pragma: no cover - kernels are part of droplab; kept for safety
    _kernels = None

__all__ = ["MemberNoise", "batched_dropout", "fusable", "relu_dropout"]

_TWO16 = 1 << 16


def _col(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(K,) -> (K, 1, ..., 1) with ``ndim`` dims, to broadcast over a member's rows."""
    return t.view(-1, *([1] * (ndim - 1)))


class MemberNoise:
    """Per-member mask streams and per-slot rates of a batched model.

    Args:
        seeds: member seeds (K,).
        rates: per slot, the K members' P(drop), e.g. ``[input_rates, hidden_rates, ...]``.
        gaussian: per member, True for multiplicative Gaussian noise
            ``N(1, rate / (1 - rate))`` instead of Bernoulli.
        scaling: ``"inverted"`` (kept units scaled by 1/keep in training) or ``"classic"``.
        spatial: per slot, True to share one mask value over the spatial dims of a
            ``(K, B, C, *spatial)`` activation (spatial dropout, Tompson et al. 2015).
        blocks: per slot, a DropBlock block size (Ghiasi et al. 2018) or None; the slot
            then drops blocks with :func:`droplab.functional.drop_block`'s math.
        stream: the rng stream name (``"masks"`` for training, ``"mc"`` for MC evaluation).
        backend: ``"auto"`` (kernel when available), ``"kernel"`` or ``"torch"``.

    Call :meth:`advance` once per forward pass (training step, MC sample) so every pass
    draws fresh masks on the kernel backend.
    """

    def __init__(
        self,
        seeds: list[int],
        rates: list[list[float]],
        gaussian: list[bool],
        *,
        scaling: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        spatial: list[bool] | None = None,
        blocks: list[int | None] | None = None,
        stream: str = "masks",
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "kernel", "torch"):
            raise ValueError(f"backend must be 'auto', 'kernel' or 'torch', got {backend!r}")
        if backend == "kernel" and _kernels is None:  # pragma: no cover
            raise ValueError("backend='kernel' needs droplab.kernels")
        self.backend = "torch" if backend == "torch" or _kernels is None else "kernel"
        self.counter = 0
        self.K = len(seeds)
        self.seeds, self.stream, self.dtype = list(seeds), stream, dtype
        self.device = torch.device(device)
        self.scaling = scaling
        self.gaussian = list(gaussian)
        self.rates = [list(map(float, r)) for r in rates]
        self.spatial = list(spatial) if spatial is not None else [False] * len(rates)
        self.blocks = list(blocks) if blocks is not None else [None] * len(rates)
        self._block_cache: dict = {}
        if self.backend == "torch":
            self.gens = [rng.generator(s, stream, device=self.device) for s in seeds]
        self.member_seeds = torch.tensor([rng.derive(s, stream) for s in seeds], dtype=torch.int64)
        self.all_gauss = all(self.gaussian)
        self.is_gauss = torch.tensor(self.gaussian, device=self.device)  # (K,)
        self.slots = []
        for r in self.rates:
            bern = [x > 0 and not g for x, g in zip(r, self.gaussian)]
            gauss = [x > 0 and g for x, g in zip(r, self.gaussian)]
            keep = torch.tensor([1.0 - x for x in r], dtype=dtype, device=self.device)  # (K,)
            self.slots.append(
                {
                    "any": any(bern) or any(gauss),
                    "bern": bern,
                    "gauss": gauss,
                    "keep": keep,
                    # kernel backend: keep 1 / sigma 0 rows are the identity (CPU, float64:
                    # the kernel reads per-row rates on the host)
                    "cpu_keep": torch.tensor(
                        [1.0 - x if b else 1.0 for x, b in zip(r, bern)], dtype=torch.float64
                    ),
                    "cpu_sigma": torch.tensor(
                        [math.sqrt(x / (1.0 - x)) if g else 0.0 for x, g in zip(r, gauss)],
                        dtype=torch.float64,
                    ),
                    # torch backend: 16 random bits per unit, kept iff bits < keep * 2^16
                    # (keep resolved to 1/65536; rate 0.5 is exact), as an int32 threshold
                    # on the signed int16 view of the bits
                    "thresh": torch.tensor(
                        [round((1.0 - x) * _TWO16) - (1 << 15) for x in r],
                        dtype=torch.int32,
                        device=self.device,
                    ),
                    "scale": (1.0 / keep) if scaling == "inverted" else torch.ones_like(keep),
                    "sigma": torch.tensor(
                        [math.sqrt(x / (1.0 - x)) for x in r], dtype=dtype, device=self.device
                    ),
                }
            )

    def subset(self, keep: list[int]) -> MemberNoise:
        """The noise of members ``keep`` only (indices into the current K, in that order):
        each kept member keeps its seed, rates, variant and its stream position (the shared
        ``counter``; on the torch backend its own ``torch.Generator`` object), so its masks
        from here on are exactly those it would have drawn in the full batch."""
        return self._continued(
            [self.seeds[k] for k in keep],
            [[r[k] for k in keep] for r in self.rates],
            [self.gaussian[k] for k in keep],
            [self.gens[k] for k in keep] if self.backend == "torch" else None,
        )

    def with_rates(self, rates: list[list[float]]) -> MemberNoise:
        """The same members and stream positions (the shared ``counter``; on the torch
        backend the same ``torch.Generator`` objects, mid-stream) with other per-slot
        ``rates`` (same shape as :attr:`rates`): a rate schedule's next value."""
        if len(rates) != len(self.rates) or any(len(r) != self.K for r in rates):
            raise ValueError(
                f"rates must be {len(self.rates)} slots of {self.K} members, got "
                f"{[len(r) for r in rates]}"
            )
        return self._continued(
            self.seeds, rates, self.gaussian, self.gens if self.backend == "torch" else None
        )

    def _continued(
        self,
        seeds: list[int],
        rates: list[list[float]],
        gaussian: list[bool],
        gens: list[torch.Generator] | None,
    ) -> MemberNoise:
        """A MemberNoise of these members that continues this one's stream: the shared
        ``counter``, and on the torch backend the given generators (mid-stream)."""
        new = MemberNoise(
            seeds,
            rates,
            gaussian,
            scaling=self.scaling,
            device=self.device,
            dtype=self.dtype,
            spatial=self.spatial,
            blocks=self.blocks,
            stream=self.stream,
            backend=self.backend,
        )
        new.counter = self.counter
        if gens is not None:
            new.gens = gens
        return new

    def advance(self) -> None:
        """Move to the next forward pass (fresh masks on the kernel backend)."""
        self.counter += 1

    def eval_scale(self, slot: int) -> torch.Tensor | None:
        """The deterministic-evaluation factor of a slot, (K,): ``keep`` for
        classic-scaled Bernoulli members, 1 otherwise; None when it is 1 for all."""
        s = self.slots[slot]
        if self.scaling != "classic" or not any(s["bern"]):
            return None
        return torch.where(self.is_gauss, torch.ones_like(s["keep"]), s["keep"])


def batched_dropout(x: torch.Tensor, noise: MemberNoise, slot: int) -> torch.Tensor:
    """Apply member k's dropout of ``slot`` to ``x[k]`` for every k.

    Bernoulli: ``x * m / keep_k`` (inverted) or ``x * m`` (classic), ``m ~ Bernoulli(keep_k)``
    elementwise (or per channel for spatial slots). Gaussian: ``x * (1 + sigma_k z)``,
    ``z ~ N(0, 1)``, ``sigma_k^2 = rate_k / (1 - rate_k)`` (the mean and variance of
    inverted Bernoulli).

    Shape: x ``(K, B, ...)`` -> ``(K, B, ...)``.
    """
    s = noise.slots[slot]
    if not s["any"]:
        return x
    if noise.blocks[slot] is not None:
        return _batched_drop_block(x, noise, slot)
    nd = x.dim()
    bdims = tuple(range(3, nd)) if noise.spatial[slot] else ()
    if noise.backend == "kernel":
        offset = noise.counter * len(noise.slots) + slot
        if any(s["bern"]):
            x = _kernels.bernoulli(
                x, _col(s["cpu_keep"], nd), 0, offset, scaling=noise.scaling,
                broadcast_dims=bdims, member_seeds=noise.member_seeds,
            )  # fmt: skip
        if any(s["gauss"]):
            if bdims:
                raise ValueError("spatial Gaussian dropout is not supported in the fast path")
            x = _kernels.gaussian(
                x, _col(s["cpu_sigma"], nd), 0, offset, member_seeds=noise.member_seeds
            )
        return x
    K = x.shape[0]
    mshape = tuple(1 if d in bdims else n for d, n in enumerate(x.shape))  # (K, B, C, 1..)
    per = math.prod(mshape[1:])
    mult = None
    if any(s["bern"]):
        words = (per + 3) // 4
        bits = torch.empty(K, words, dtype=torch.int64, device=x.device)
        for k in range(K):
            if s["bern"][k]:
                bits[k].random_(-(1 << 63), None, generator=noise.gens[k])
        bits16 = bits.view(torch.int16)[:, :per].reshape(mshape)  # (K, B, ...)
        mult = (bits16 < _col(s["thresh"], nd)) * _col(s["scale"], nd)  # {0, scale}
    if any(s["gauss"]):
        z = torch.zeros(mshape, dtype=x.dtype, device=x.device)  # inactive rows stay 0
        for k in range(K):
            if s["gauss"][k]:
                z[k].normal_(generator=noise.gens[k])
        gmult = torch.addcmul(torch.ones_like(z), z, _col(s["sigma"], nd))
        mult = gmult if mult is None else torch.where(_col(noise.is_gauss, nd), gmult, mult)
    return x * mult


def _batched_drop_block(x: torch.Tensor, noise: MemberNoise, slot: int) -> torch.Tensor:
    """Member k's DropBlock at its rate, the math of ``functional.drop_block``: block
    starts ~ Bernoulli(gamma_k) in the valid region, every unit of a started block
    dropped, each unit rescaled by its own keep probability ``(1 - gamma_k)^c(u)``.
    Shape: x (K, B, C, *spatial) -> same."""
    from droplab import functional as dF

    s = noise.slots[slot]
    K, B, C = x.shape[:3]
    spatial = tuple(x.shape[3:])
    b = noise.blocks[slot]
    blocks = (b,) * len(spatial) if isinstance(b, int) else tuple(b)
    key = (slot, spatial, x.dtype, x.device)
    if key not in noise._block_cache:
        gammas, keep_probs = [], []
        for k, rate in enumerate(noise.rates[slot]):
            g = dF.drop_block_gamma(spatial, rate, blocks) if s["bern"][k] else 0.0
            gammas.append(g)
            keep_probs.append(dF.drop_block_keep_prob(spatial, g, blocks))  # (*spatial)
        kp = torch.stack(keep_probs).to(x.device, x.dtype)  # (K, *spatial)
        noise._block_cache[key] = (torch.tensor(gammas, dtype=torch.float64), kp)
    gamma, kp = noise._block_cache[key]
    valid = tuple(n - bb + 1 for n, bb in zip(spatial, blocks))
    shape = (K, B, C, *valid)
    nd = len(shape)
    if noise.backend == "kernel":
        offset = noise.counter * len(noise.slots) + slot
        seeds = _kernels.bernoulli(
            torch.ones(shape, dtype=x.dtype, device=x.device), _col(gamma, nd), 0, offset,
            scaling="classic", member_seeds=noise.member_seeds,
        )  # fmt: skip  # (K, B, C, *valid) in {0, 1}, 1 = a block starts here
    else:
        u = torch.ones(shape, dtype=x.dtype, device=x.device)  # inactive rows: never start
        for k in range(K):
            if s["bern"][k]:
                u[k].uniform_(generator=noise.gens[k])
        seeds = (u < _col(gamma.to(x.device, x.dtype), nd)).to(x.dtype)
    pad = [p for bb in reversed(blocks) for p in (bb - 1, bb - 1)]
    seeds = torch.nn.functional.pad(seeds.reshape(K * B, C, *valid), pad)
    pool = torch.nn.functional.max_pool1d if len(spatial) == 1 else torch.nn.functional.max_pool2d
    dropped = pool(seeds, kernel_size=blocks, stride=1).view(x.shape)  # 1 = dropped
    return x * ((1.0 - dropped) / kp.view(K, 1, 1, *spatial))


def fusable(noise: MemberNoise, slot: int) -> bool:
    """Whether :func:`relu_dropout` may replace ``batched_dropout(relu(z))`` at ``slot``:
    the slot draws masks and no member's noise there is Gaussian."""
    s = noise.slots[slot]
    return s["any"] and not any(s["gauss"])


def _row_masks(noise: MemberNoise, slot: int, z: torch.Tensor):
    """The slot's fused numba ReLU + dropout (``kernels.RowBernoulli``), or None where it
    cannot run (torch backend, not CPU float32/64, spatial or DropBlock slots)."""
    if (
        noise.backend != "kernel"
        or noise.spatial[slot]
        or noise.blocks[slot] is not None
        or not _kernels.RowBernoulli.supports(z)
    ):
        return None
    s = noise.slots[slot]
    if "rows" not in s:
        s["rows"] = _kernels.RowBernoulli(
            s["cpu_keep"].tolist(), noise.member_seeds, scaling=noise.scaling
        )
    return s["rows"]


def _relu_dropout_forward(
    z: torch.Tensor, noise: MemberNoise, slot: int, inplace: bool, rows
) -> torch.Tensor:
    """``batched_dropout(relu(z))``; ``rows`` is ``_row_masks(noise, slot, z)``. With
    ``inplace`` the fused path writes into z itself when z is contiguous, so the pass
    touches memory that is still in cache."""
    if rows is None:
        return batched_dropout(torch.relu(z), noise, slot)
    out = z if inplace and z.is_contiguous() else None
    return rows.relu(z, noise.counter * len(noise.slots) + slot, out=out)  # same mask


class _ReluDropout(torch.autograd.Function):
    """``y = dropout(relu(z))`` whose backward needs no mask: with ``y = relu(z) m s``
    (``m`` in {0, 1}, scale ``s > 0``), ``dy/dz = m s 1[z > 0] = s 1[y > 0]``, so the
    gradient is ``s * g`` where ``y > 0`` and 0 elsewhere, read off the saved output (which
    the next layer's backward keeps anyway). No mask is stored or regenerated. On CPU
    float32/64 both passes are single numba loops (``kernels.RowBernoulli``)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, noise: MemberNoise, slot: int, inplace: bool) -> torch.Tensor:
        ctx.rows = _row_masks(noise, slot, z)
        ctx.inplace = inplace
        y = _relu_dropout_forward(z, noise, slot, inplace, ctx.rows)  # grad mode is off
        if y.data_ptr() == z.data_ptr():  # written in place: autograd must know
            ctx.mark_dirty(z)
            y = z
        s = noise.slots[slot]
        ctx.scale = _col(s["scale"], z.dim()) if noise.scaling == "inverted" else None
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (y,) = ctx.saved_tensors
        if ctx.rows is not None:
            # inplace: g is the fresh input gradient of the next stacked_linear, read by
            # no one else, so it is overwritten (cache-hot) when contiguous
            out = g if ctx.inplace and g.is_contiguous() else None
            return ctx.rows.backward(g, y, out=out), None, None, None
        dz = torch.ops.aten.threshold_backward(g, y, 0)  # g where y > 0, else 0
        if ctx.scale is not None:
            dz = dz.mul_(ctx.scale)  # (K, B, H) * (K, 1, 1)
        return dz, None, None, None


def relu_dropout(
    z: torch.Tensor, noise: MemberNoise, slot: int, *, inplace: bool = False
) -> torch.Tensor:
    """``batched_dropout(relu(z), noise, slot)`` with a mask-free backward (see
    ``_ReluDropout``); needs ``fusable(noise, slot)``. Shape: (K, B, H) -> (K, B, H).

    ``inplace=True`` (the trainer, where z is a fresh GEMM output and its gradient comes
    from the next layer's GEMM, both read by nothing else) lets the fused CPU path
    overwrite z in the forward and the incoming gradient in the backward. A leaf z that
    requires grad is never overwritten."""
    if z.is_leaf and z.requires_grad:
        inplace = False
    if torch.is_grad_enabled() and z.requires_grad:
        return _ReluDropout.apply(z, noise, slot, inplace)
    return _relu_dropout_forward(z, noise, slot, inplace, _row_masks(noise, slot, z))
