"""Hypothesis fuzz of every public op of ``droplab.functional`` and every layer of
``droplab.layers``.

Each example draws an input (shape with 0..4 dims, empty dims and 0-d included; dtype
float16/bfloat16/float32/float64, or a non-float dtype, or not a tensor at all; every
available device), a rate/keep/sigma (valid values at the edges 0, 1, 1e-300, 1 - 1e-12, and
invalid ones: negative, > 1, NaN, inf, bool, str, a tensor, both rate and keep), and the
op's other options (scaling, broadcast_dims, block_size, backend, generator, training).

An independent model of the documented contract (:func:`_expect_valid` and friends) says
whether the call is valid. Then:

* valid   -> the call must succeed; output has the input's shape, dtype and device; the
  eval / rate 0 / rate 1 rules hold exactly; every training output element is one of the
  values the op's math allows (0 or x/keep for Bernoulli, ...); finite input gives finite
  output whenever the exact result fits the dtype; gradients equal y/x for the
  multiplicative ops; a layer gives the very output of its functional with the same seed.
* invalid -> ValueError or TypeError with a non-empty message.

Anything else (another exception, NaN from finite input, a wrong shape) fails the test.
Deterministic (``derandomize``) so CI is stable; ``DROPLAB_FUZZ_EXAMPLES=N`` runs N
examples per op instead of the CI count.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import droplab as dl
from droplab import functional as F

EXAMPLES = int(os.environ.get("DROPLAB_FUZZ_EXAMPLES", "0")) or None
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALPHA_PRIME = -F.SELU_LAMBDA * F.SELU_ALPHA

#: op name -> Counter of "valid" / "invalid" calls made (reported in docs/reliability.md).
COUNTS: dict[str, Counter] = {}


def fuzz_settings(n: int):
    return settings(
        max_examples=EXAMPLES or n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Invalid(Exception):
    """The contract model says: this call must raise ValueError or TypeError."""


# -- argument strategies -------------------------------------------------------------------

VALID_PROBS = [0.0, 1.0, 0.5, 0.3, 1e-300, 5e-324, 1e-7, 1.0 - 1e-12, 0.999, 0, 1, np.float64(0.25)]
INVALID_PROBS = [
    -0.1,
    1.5,
    -1e-300,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "0.5",
    torch.tensor(0.5),
    [0.5],
]


def mostly(valid, invalid, p_invalid: float = 0.15):
    """``valid`` values, or with probability ~``p_invalid`` an ``invalid`` one."""
    return st.integers(0, 99).flatmap(lambda i: invalid if i < 100 * p_invalid else valid)


def prob_values():
    return mostly(
        st.one_of(st.sampled_from(VALID_PROBS), st.floats(0.0, 1.0)),
        st.one_of(st.sampled_from(INVALID_PROBS), st.floats(allow_nan=True, allow_infinity=True)),
    )


def is_real(v) -> bool:
    import numbers

    return not isinstance(v, bool) and isinstance(v, numbers.Real)


def prob(v, name: str, *, allow_one: bool = True, allow_zero: bool = True) -> float:
    if not is_real(v):
        raise Invalid(f"{name} {v!r} not a real")
    f = float(v)
    if math.isnan(f) or f < 0 or f > 1 or (not allow_one and f == 1) or (not allow_zero and f == 0):
        raise Invalid(f"{name} {v!r} out of range")
    return f


def resolve_rate(kw: dict, default: float | None, *, gaussian: bool = False) -> tuple[float, float]:
    """(rate, keep) from the drawn kwargs, as documented: rate = P(drop), one of rate/keep."""
    has_rate, has_keep = "rate" in kw and kw["rate"] is not None, kw.get("keep") is not None
    if has_rate and has_keep:
        raise Invalid("both rate and keep")
    if has_keep:
        k = prob(kw["keep"], "keep", allow_zero=not gaussian)
        return 1.0 - k, k
    if not has_rate:
        if default is None or "rate" in kw:  # an explicit rate=None means "not given"
            raise Invalid("neither rate nor keep")
        return default, 1.0 - default
    r = prob(kw["rate"], "rate", allow_one=not gaussian)
    return r, 1.0 - r


def gaussian_sigma_of(kw: dict) -> float:
    """sigma = sqrt(rate / keep); a keep so small that it overflows is invalid."""
    rate, keep = resolve_rate(kw, None, gaussian=True)
    sigma = math.sqrt(rate / keep)
    if not math.isfinite(sigma):
        raise Invalid("sigma overflows")
    return sigma


@st.composite
def rate_kwargs(draw):
    """{} (default), {"rate": r}, {"keep": k} or both, with valid and invalid values."""
    form = draw(st.sampled_from(["default"] * 2 + ["rate"] * 6 + ["keep"] * 3 + ["both", "none"]))
    if form == "default":
        return {}
    if form == "none":
        return {"rate": None}
    if form == "rate":
        return {"rate": draw(prob_values())}
    if form == "keep":
        return {"keep": draw(prob_values())}
    return {"rate": draw(prob_values()), "keep": draw(prob_values())}


@dataclass
class Input:
    x: object  # usually a tensor; sometimes a list or an ndarray (must be refused)
    seed: int
    nonzero: bool  # every element is nonzero (masks can be read off the output)
    device: str

    @property
    def tensor(self) -> bool:
        return isinstance(self.x, torch.Tensor)

    @property
    def is_float(self) -> bool:
        return self.tensor and self.x.is_floating_point()


@st.composite
def inputs(draw, min_rank: int = 0, max_rank: int = 4, max_size: int = 5, min_size: int = 1):
    rank = draw(st.integers(min_rank, max_rank))
    shape = tuple(draw(st.integers(0, max_size)) for _ in range(rank))
    if draw(st.integers(0, 3)) > 0:  # mostly non-empty shapes
        shape = tuple(max(min_size, s) for s in shape)
    kind = draw(st.sampled_from(["float"] * 30 + ["int", "bool", "complex", "list", "ndarray"]))
    seed = draw(st.integers(0, 2**31 - 1))
    device = draw(st.sampled_from(DEVICES))
    g = torch.Generator().manual_seed(seed)
    mag = 0.5 + 3.5 * torch.rand(shape, generator=g, dtype=torch.float64)  # |x| in [0.5, 4]
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()
    values = mag * sign  # (*shape), no zeros
    nonzero = True
    if draw(st.booleans()) and values.numel():
        values = torch.where(torch.rand(shape, generator=g) < 0.3, 0.0, values)  # some zeros
        nonzero = False
    if kind == "float":
        dtype = draw(st.sampled_from(FLOATS))
        x = values.to(dtype)
    elif kind == "int":
        x = values.round().to(draw(st.sampled_from([torch.int64, torch.int32, torch.uint8])))
    elif kind == "bool":
        x = values > 0
    elif kind == "complex":
        x = values.to(torch.complex64)
    elif kind == "list":
        return Input(values.tolist(), seed, nonzero, "cpu")
    else:
        return Input(values.numpy(), seed, nonzero, "cpu")
    return Input(x.to(device), seed, nonzero, device)


def generators(device: str):
    """None, a seeded generator on the input's device, or something that is not one."""
    choices = [("none", None)] * 3 + [("gen", device)] * 6 + [("bad", 7), ("bad", "seed")]
    if device != "cpu":
        choices.append(("cpu-gen", "cpu"))
    return st.sampled_from(choices)


def make_generator(choice, seed: int):
    kind, arg = choice
    if kind == "none":
        return None
    if kind in ("gen", "cpu-gen"):
        return torch.Generator(device=arg).manual_seed(seed)
    return arg


def check_generator_choice(choice) -> None:
    if choice[0] == "bad":
        raise Invalid("generator is not a torch.Generator")


def check_float_input(inp: Input) -> torch.Tensor:
    if not inp.is_float:
        raise Invalid("input is not a float tensor")
    return inp.x


# -- checking one call ---------------------------------------------------------------------


def run_case(name: str, call, expect, inp: Input, *, mismatched_generator: bool = False):
    """Run ``call()``; ``expect()`` returns a checker or raises :class:`Invalid`."""
    try:
        checker = expect()
    except Invalid:
        checker = None
    counts = COUNTS.setdefault(name, Counter())
    counts["valid" if checker else "invalid"] += 1
    if checker is None:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert str(info.value).strip(), f"{name}: {type(info.value).__name__} without a message"
        return
    if mismatched_generator:  # a CPU generator for a CUDA input: work, or refuse clearly
        try:
            y = call()
        except (ValueError, TypeError) as e:
            assert str(e).strip()
            return
    else:
        y = call()
    x = inp.x
    assert isinstance(y, torch.Tensor), f"{name} returned {type(y).__name__}"
    assert y.shape == x.shape, f"{name}: shape {tuple(y.shape)} != input {tuple(x.shape)}"
    assert y.dtype == x.dtype, f"{name}: dtype {y.dtype} != input {x.dtype}"
    assert y.device == x.device, f"{name}: device {y.device} != input {x.device}"
    checker(y)


def fits(x: torch.Tensor, scale: float) -> bool:
    """Whether every exact result |x| * scale (and twice it) fits x's dtype without overflow."""
    return 4.0 * scale * 2.0 < torch.finfo(x.dtype).max


def assert_finite(name: str, x: torch.Tensor, y: torch.Tensor, scale: float) -> None:
    if fits(x, scale):
        assert torch.isfinite(y).all(), f"{name}: non-finite output from finite input"
    else:  # the true result overflows the dtype: inf is honest, NaN never is for nonzero x
        assert not torch.isnan(y[x != 0]).any(), f"{name}: NaN from finite nonzero input"


def tol(dtype: torch.dtype) -> float:
    """A few roundings of a product in the dtype. The counter-based kernels resolve keep to
    24 bits (``droplab.kernels.bernoulli``: exact keep probability ceil(keep 2^24) / 2^24,
    scale 1 / float32(keep)), so a kept element's scale is exact to 2^-24 on every dtype."""
    return 4.0 * max(torch.finfo(dtype).eps, 2.0**-24)


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Element-wise |a - b| <= tol * |b| + tiny, in float64 (a, b same shape)."""
    a, b = a.double(), b.double()
    return (a - b).abs() <= tol(dtype) * b.abs() + 4 * torch.finfo(dtype).tiny


def check_values(name, x, y, allowed: list[torch.Tensor]) -> None:
    """Every element of y equals (to rounding) one of the candidate tensors at that place."""
    ok = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    for cand in allowed:
        ok |= close(y, cand.expand(x.shape), x.dtype)
    bad = (~ok).nonzero()
    assert ok.all(), (
        f"{name}: {len(bad)} elements take values the op cannot produce, e.g. at {bad[:3].tolist()}"
    )


def check_grad(name: str, call, x: torch.Tensor, y: torch.Tensor) -> None:
    """For y = x * m (m independent of x): dy/dx summed = m = y / x, from the same mask."""
    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return
    xg = x.detach().clone().requires_grad_(True)
    yg = call(xg)
    yg.sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape
    assert torch.isfinite(xg.grad).all(), f"{name}: non-finite gradient"
    nz = x != 0
    assert close(xg.grad[nz] * x[nz], yg.detach()[nz], x.dtype).all(), f"{name}: grad != y/x"


def identity(name, x):
    def checker(y):
        assert torch.equal(y, x), f"{name}: eval / rate-0 output must equal the input"

    return checker


def zeros(name, x):
    def checker(y):
        assert (y == 0).all(), f"{name}: rate 1 must give zeros"
        assert not torch.isnan(y).any()

    return checker


# -- functional ops ------------------------------------------------------------------------

SCALINGS = ["inverted"] * 4 + ["classic"] * 4 + ["bogus"]
BACKENDS = ["auto"] * 3 + ["torch"] * 3 + ["fast"] * 2 + ["gpu"]


@fuzz_settings(120)
@given(data=st.data())
def test_fuzz_dropout(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    scaling = data.draw(st.sampled_from(SCALINGS))
    backend = data.draw(st.sampled_from(BACKENDS))
    ndim = inp.x.ndim if inp.tensor else 1
    dims = data.draw(
        mostly(
            st.one_of(
                st.just(()),
                st.integers(-ndim, max(-ndim, ndim - 1)),
                st.lists(st.integers(-ndim - 1, ndim), max_size=3).map(tuple),
            ),
            st.sampled_from([True, "0", 0.5, (0, "1"), ndim, -ndim - 1]),
        )
    )
    gchoice = data.draw(generators(inp.device))
    grad = data.draw(st.booleans())

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.dropout(
            inp.x if x is None else x,
            **kw,
            training=training,
            scaling=scaling,
            broadcast_dims=dims,
            generator=g,
            backend=backend,
        )

    def expect():
        x = check_float_input(inp)
        rate, keep = resolve_rate(kw, 0.5)
        if scaling not in ("inverted", "classic") or backend not in ("auto", "torch", "fast"):
            raise Invalid("option")
        d = (dims,) if isinstance(dims, int) and not isinstance(dims, bool) else dims
        if isinstance(d, (bool, str, float)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in d
        ):
            raise Invalid("dims type")
        norm = [i % x.ndim if -x.ndim <= i < x.ndim else None for i in d]
        if None in norm or len(set(norm)) != len(norm):
            raise Invalid("dims range")
        check_generator_choice(gchoice)
        if not training:
            if scaling == "classic" and rate > 0:
                return lambda y: check_values("dropout", x, y, [x.double() * keep])
            return identity("dropout", x)
        if rate == 0:
            return identity("dropout", x)
        if rate == 1:
            return zeros("dropout", x)
        scale = 1 / keep if scaling == "inverted" else 1.0

        def checker(y):
            assert_finite("dropout", x, y, scale)
            if not fits(x, scale):
                return
            check_values("dropout", x, y, [torch.zeros((), device=x.device), x.double() * scale])
            if inp.nonzero and norm and x.numel():
                kept = y != 0
                shared = kept.amax(dim=tuple(norm), keepdim=True)
                assert torch.equal(kept, shared.expand(x.shape)), "mask not shared on dims"
            if grad:
                check_grad("dropout", call, x, y)

        return checker

    run_case("dropout", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(100)
@given(data=st.data())
def test_fuzz_fixed_count_dropout(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    scaling = data.draw(st.sampled_from(SCALINGS))
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.fixed_count_dropout(
            inp.x if x is None else x, **kw, training=training, scaling=scaling, generator=g
        )

    def expect():
        x = check_float_input(inp)
        rate, _ = resolve_rate(kw, 0.5)
        if scaling not in ("inverted", "classic"):
            raise Invalid("scaling")
        check_generator_choice(gchoice)
        if x.ndim == 0:
            raise Invalid("0-d")
        n = x.shape[-1]
        k = round(rate * n)
        if n == 0 or k == 0:
            return identity("fixed_count", x)
        kappa = (n - k) / n
        if not training:
            if scaling == "classic":
                return lambda y: check_values("fixed_count", x, y, [x.double() * kappa])
            return identity("fixed_count", x)
        if k == n:
            return zeros("fixed_count", x)
        scale = 1 / kappa if scaling == "inverted" else 1.0

        def checker(y):
            assert_finite("fixed_count", x, y, scale)
            check_values(
                "fixed_count", x, y, [torch.zeros((), device=x.device), x.double() * scale]
            )
            if inp.nonzero and x.numel():
                per_row = (y == 0).sum(dim=-1)
                assert (per_row == k).all(), f"fixed_count: dropped {per_row.unique()} != {k}"
            check_grad("fixed_count", call, x, y)

        return checker

    run_case("fixed_count_dropout", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(100)
@given(data=st.data())
def test_fuzz_gaussian_dropout(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    if data.draw(st.booleans()):
        kw = {"sigma": data.draw(st.one_of(st.sampled_from([0.0, 0.5, 3, 1e30]), prob_values()))}
        if data.draw(st.integers(0, 4)) == 0:
            kw["rate"] = 0.5  # sigma together with rate: refused
    training = data.draw(st.booleans())
    backend = data.draw(st.sampled_from(BACKENDS))
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.gaussian_dropout(
            inp.x if x is None else x, **kw, training=training, generator=g, backend=backend
        )

    def expect():
        x = check_float_input(inp)
        if "sigma" in kw:
            if "rate" in kw:
                raise Invalid("sigma and rate")
            s = kw["sigma"]
            if not is_real(s) or not math.isfinite(float(s)) or float(s) < 0:
                raise Invalid("sigma")
            sigma = float(s)
        else:
            sigma = gaussian_sigma_of(kw)
        if backend not in ("auto", "torch", "fast"):
            raise Invalid("backend")
        check_generator_choice(gchoice)
        if not training or sigma == 0:
            return identity("gaussian_dropout", x)
        scale = 1 + 8 * sigma  # |1 + sigma * eps| with |eps| < 8 (P < 1e-15 per element)

        def checker(y):
            assert_finite("gaussian_dropout", x, y, scale)
            if fits(x, scale):
                check_grad("gaussian_dropout", call, x, y)

        return checker

    run_case("gaussian_dropout", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_gaussian_noise(data):
    inp = data.draw(inputs())
    std = data.draw(st.one_of(st.sampled_from([0.0, 0.1, 2, 1e30]), prob_values()))
    training = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call():
        g = make_generator(gchoice, inp.seed)
        return F.gaussian_noise(inp.x, std, training=training, generator=g)

    def expect():
        x = check_float_input(inp)
        if not is_real(std) or not math.isfinite(float(std)) or float(std) < 0:
            raise Invalid("std")
        check_generator_choice(gchoice)
        if not training or std == 0:
            return identity("gaussian_noise", x)
        return lambda y: assert_finite("gaussian_noise", x, y, 1 + 8 * float(std))

    run_case("gaussian_noise", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_alpha_dropout(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call():
        g = make_generator(gchoice, inp.seed)
        return F.alpha_dropout(inp.x, **kw, training=training, generator=g)

    def expect():
        x = check_float_input(inp)
        rate, keep = resolve_rate(kw, 0.5)
        check_generator_choice(gchoice)
        if not training or rate == 0:
            return identity("alpha_dropout", x)
        if rate == 1:
            return zeros("alpha_dropout", x)
        a = (keep + ALPHA_PRIME**2 * keep * rate) ** -0.5
        b = -a * rate * ALPHA_PRIME
        # a <= 1/sqrt(keep): bounded by 1/sqrt(1e-12) = 1e6 on our rates

        def checker(y):
            assert_finite("alpha_dropout", x, y, a + abs(b))
            if fits(x, a + abs(b)):
                kept, dropped = x.double() * a + b, torch.tensor(ALPHA_PRIME * a + b)
                check_values("alpha_dropout", x, y, [kept, dropped.to(x.device)])

        return checker

    run_case("alpha_dropout", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_spatial_dropout(data):
    inp = data.draw(st.one_of(inputs(min_rank=3), inputs()))
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.spatial_dropout(inp.x if x is None else x, **kw, training=training, generator=g)

    def expect():
        x = check_float_input(inp)
        rate, keep = resolve_rate(kw, 0.5)
        check_generator_choice(gchoice)
        if x.ndim < 3:
            raise Invalid("rank")
        if not training or rate == 0:
            return identity("spatial_dropout", x)
        if rate == 1:
            return zeros("spatial_dropout", x)

        def checker(y):
            assert_finite("spatial_dropout", x, y, 1 / keep)
            if not fits(x, 1 / keep):
                return
            check_values(
                "spatial_dropout", x, y, [torch.zeros((), device=x.device), x.double() / keep]
            )
            if inp.nonzero and x.numel():
                kept = y != 0  # (N, C, *spatial): one decision per (n, c)
                dims = tuple(range(2, x.ndim))
                assert torch.equal(kept, kept.amax(dims, keepdim=True).expand(x.shape))
            check_grad("spatial_dropout", call, x, y)

        return checker

    run_case("spatial_dropout", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(100)
@given(data=st.data())
def test_fuzz_drop_block(data):
    maps = inputs(min_rank=3, max_rank=4, max_size=6, min_size=3)  # (N, C, L), (N, C, H, W)
    inp = data.draw(st.one_of(maps, maps, maps, inputs(max_rank=5, max_size=6)))
    kw = data.draw(rate_kwargs())
    rate_arg = kw.pop("rate", 0.3 if "keep" not in kw else None)
    block = data.draw(
        mostly(
            st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
            st.one_of(
                st.integers(-1, 7),
                st.lists(st.integers(-1, 7), min_size=1, max_size=3).map(tuple),
                st.sampled_from([True, 2.0, "3", (2, "x")]),
            ),
            p_invalid=0.25,
        )
    )
    training = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.drop_block(
            inp.x if x is None else x, rate_arg, block, **kw, training=training, generator=g
        )

    def expect():
        x = check_float_input(inp)
        rate, _ = resolve_rate({"rate": rate_arg, **kw}, None)
        check_generator_choice(gchoice)
        if x.ndim not in (3, 4):
            raise Invalid("rank")
        spatial = tuple(x.shape[2:])
        blocks = block if isinstance(block, tuple) else (block,) * len(spatial)
        if isinstance(block, (bool, float, str)) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in blocks
        ):
            raise Invalid("block type")
        if len(blocks) != len(spatial) or any(b < 1 for b in blocks):
            raise Invalid("block value")
        if any(b > s for b, s in zip(blocks, spatial)):
            raise Invalid("block larger than map")
        if not training or rate == 0:
            return identity("drop_block", x)
        if rate == 1:
            return zeros("drop_block", x)

        def checker(y):
            p_min = float(
                F.drop_block_keep_prob(
                    spatial, F.drop_block_gamma(spatial, rate, blocks), blocks
                ).min()
            )
            scale = 1 / p_min
            assert_finite("drop_block", x, y, scale)
            if fits(x, scale) and inp.nonzero and x.numel():
                ratio = y.double() / x.double()  # 0 (dropped) or 1/p_u >= 1 (kept)
                assert ((ratio == 0) | (ratio >= 1 - tol(x.dtype))).all()
                check_grad("drop_block", call, x, y)

        return checker

    run_case("drop_block", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_drop_path(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    scale_by_keep = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.drop_path(
            inp.x if x is None else x,
            **kw,
            training=training,
            scale_by_keep=scale_by_keep,
            generator=g,
        )

    def expect():
        x = check_float_input(inp)
        rate, keep = resolve_rate(kw, None)
        check_generator_choice(gchoice)
        if x.ndim == 0:
            raise Invalid("0-d")
        if not training or rate == 0:
            return identity("drop_path", x)
        if rate == 1:
            return zeros("drop_path", x)
        scale = 1 / keep if scale_by_keep else 1.0

        def checker(y):
            assert_finite("drop_path", x, y, scale)
            if not fits(x, scale):
                return
            check_values("drop_path", x, y, [torch.zeros((), device=x.device), x.double() * scale])
            if inp.nonzero and x.numel():
                kept = (y != 0).reshape(x.shape[0], -1)  # (N, rest): one decision per example
                assert torch.equal(kept, kept.amax(1, keepdim=True).expand_as(kept))
            check_grad("drop_path", call, x, y)

        return checker

    run_case("drop_path", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(60)
@given(data=st.data())
def test_fuzz_drop_connect_weight(data):
    inp = data.draw(inputs())
    kw = data.draw(rate_kwargs())
    training = data.draw(st.booleans())
    gchoice = data.draw(generators(inp.device))

    def call(x=None):
        g = make_generator(gchoice, inp.seed)
        return F.drop_connect_weight(
            inp.x if x is None else x, **kw, training=training, generator=g
        )

    def expect():
        x = check_float_input(inp)
        rate, keep = resolve_rate(kw, None)
        check_generator_choice(gchoice)
        if not training or rate == 0:
            return identity("drop_connect_weight", x)
        if rate == 1:
            return zeros("drop_connect_weight", x)

        def checker(y):
            assert_finite("drop_connect_weight", x, y, 1 / keep)
            if fits(x, 1 / keep):
                check_values(
                    "drop_connect_weight",
                    x,
                    y,
                    [torch.zeros((), device=x.device), x.double() / keep],
                )
                check_grad("drop_connect_weight", call, x, y)

        return checker

    run_case("drop_connect_weight", call, expect, inp, mismatched_generator=gchoice[0] == "cpu-gen")


@fuzz_settings(60)
@given(
    spatial=st.lists(st.integers(-2, 9), min_size=0, max_size=3),
    rate=prob_values(),
    block=st.one_of(st.integers(-1, 5), st.lists(st.integers(-1, 5), min_size=1, max_size=3)),
    exact=st.booleans(),
)
def test_fuzz_drop_block_gamma(spatial, rate, block, exact):
    def expect():
        r = prob(rate, "rate")
        if isinstance(block, list):  # one int per spatial dim, 1 or 2 of them
            if len(block) != len(spatial) or not 1 <= len(block) <= 2:
                raise Invalid("blocks")
            blocks = tuple(block)
        else:  # an int: the same edge on every spatial dim (any number of them)
            blocks = (block,) * len(spatial)
        if (block if isinstance(block, int) else min(blocks)) < 1:
            raise Invalid("block < 1")
        if any(b > s for b, s in zip(blocks, spatial)):
            raise Invalid("too large")
        return r

    counts = COUNTS.setdefault("drop_block_gamma", Counter())
    try:
        r = expect()
    except Invalid:
        counts["invalid"] += 1
        with pytest.raises((ValueError, TypeError)) as info:
            F.drop_block_gamma(spatial, rate, block, exact=exact)
        assert str(info.value).strip()
        return
    counts["valid"] += 1
    gamma = F.drop_block_gamma(spatial, rate, block, exact=exact)
    assert math.isfinite(gamma) and gamma >= 0
    if exact:
        assert 0 <= gamma <= 1 and (gamma == r if r in (0.0, 1.0) else 0 < gamma < 1)


# -- layers: construction is validated; forward equals the functional with the same seed ----


def _layer_cases():
    """name -> (layer factory(kw, g), functional(x, kw, g, training), kwargs strategy, rank)."""
    return {
        "Dropout": (
            lambda kw, g: dl.Dropout(**kw, generator=g),
            lambda x, kw, g, t: F.dropout(x, **kw, training=t, generator=g),
            st.fixed_dictionaries(
                {},
                optional={
                    "scaling": st.sampled_from(SCALINGS),
                    "broadcast_dims": st.one_of(
                        st.integers(-3, 3), st.sampled_from([(), (0, 1), (1, 1), "x"])
                    ),
                    "backend": st.sampled_from(BACKENDS),
                },
            ),
        ),
        "FixedCountDropout": (
            lambda kw, g: dl.FixedCountDropout(**kw, generator=g),
            lambda x, kw, g, t: F.fixed_count_dropout(x, **kw, training=t, generator=g),
            st.fixed_dictionaries({}, optional={"scaling": st.sampled_from(SCALINGS)}),
        ),
        "GaussianDropout": (
            lambda kw, g: dl.GaussianDropout(**kw, generator=g),
            lambda x, kw, g, t: F.gaussian_dropout(x, **kw, training=t, generator=g),
            st.fixed_dictionaries({}, optional={"backend": st.sampled_from(BACKENDS)}),
        ),
        "AlphaDropout": (
            lambda kw, g: dl.AlphaDropout(**kw, generator=g),
            lambda x, kw, g, t: F.alpha_dropout(x, **kw, training=t, generator=g),
            st.just({}),
        ),
        "SpatialDropout": (
            lambda kw, g: dl.SpatialDropout(**kw, generator=g),
            lambda x, kw, g, t: F.spatial_dropout(x, **kw, training=t, generator=g),
            st.just({}),
        ),
        "DropPath": (
            lambda kw, g: dl.DropPath(**kw, generator=g),
            lambda x, kw, g, t: F.drop_path(x, **kw, training=t, generator=g),
            st.fixed_dictionaries(
                {"rate": prob_values()},
                optional={"scale_by_keep": st.sampled_from([True, False, True, False, 1])},
            ),
        ),
        "DropBlock": (
            lambda kw, g: dl.DropBlock(
                kw.pop("rate", None), kw.pop("block_size"), **kw, generator=g
            ),
            lambda x, kw, g, t: F.drop_block(
                x, kw.pop("rate", None), kw.pop("block_size"), **kw, training=t, generator=g
            ),
            st.fixed_dictionaries(
                {
                    "block_size": st.one_of(
                        st.integers(-1, 4), st.sampled_from([(2, 1), (1,), (2, 2, 2), "2"])
                    )
                }
            ),
        ),
    }


LAYER_CASES = _layer_cases()


@pytest.mark.parametrize("name", list(LAYER_CASES))
@fuzz_settings(40)
@given(data=st.data())
def test_fuzz_layer(name, data):
    make, functional, extra = LAYER_CASES[name]
    inp = data.draw(inputs())
    kw = {**data.draw(rate_kwargs()), **data.draw(extra)}
    if name == "GaussianDropout" and data.draw(st.booleans()):
        kw = {k: v for k, v in kw.items() if k not in ("rate", "keep")}
        kw["sigma"] = data.draw(st.one_of(st.sampled_from([0.0, 0.7]), prob_values()))
    gchoice = data.draw(generators(inp.device))
    counts = COUNTS.setdefault(f"layers.{name}", Counter())
    # 1. construction: the functional with the same options decides what is valid
    probe = torch.zeros(2, 2, 3, 3)
    try:
        with torch.random.fork_rng(devices=[]):
            functional(probe, dict(kw), make_generator(gchoice, 0), True)
        if name == "DropPath" and not isinstance(kw.get("scale_by_keep", True), bool):
            raise TypeError("scale_by_keep")
        valid_options = True
    except (ValueError, TypeError):
        valid_options = False
    if not valid_options:
        # construction may already refuse; if it does not, the forward pass must
        try:
            layer = make(dict(kw), make_generator(gchoice, 0))
        except (ValueError, TypeError) as e:
            counts["invalid"] += 1
            assert str(e).strip()
            return
        # options that depend on the input (block_size vs spatial dims, broadcast_dims vs
        # rank) can only be refused in forward: then it must refuse clearly
        with pytest.raises((ValueError, TypeError)) as info:
            layer(probe)
        assert str(info.value).strip()
        counts["invalid"] += 1
        return
    counts["valid"] += 1
    layer = make(dict(kw), make_generator(gchoice, inp.seed))
    for training in (True, False):
        layer.train(training)
        try:
            with torch.random.fork_rng(devices=DEVICES[1:]):  # generator=None: global RNG
                torch.manual_seed(inp.seed)
                expected = functional(inp.x, dict(kw), make_generator(gchoice, inp.seed), training)
        except (ValueError, TypeError):
            with pytest.raises((ValueError, TypeError)) as info:
                layer(inp.x)
            assert str(info.value).strip()
            continue
        if layer.generator is not None:
            layer.generator.manual_seed(inp.seed)
        with torch.random.fork_rng(devices=DEVICES[1:]):
            torch.manual_seed(inp.seed)
            got = layer(inp.x)
        assert got.shape == inp.x.shape and got.dtype == inp.x.dtype
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(expected)), (
            f"{name} differs from its functional with the same seed"
        )


@fuzz_settings(60)
@given(data=st.data())
def test_fuzz_dropconnect_and_gaussian_noise_layers(data):
    """DropConnect wraps Linear/Conv layers of matching shapes and dtypes (what the wrapped
    layer accepts); GaussianNoise takes a std."""
    kind = data.draw(st.sampled_from(["linear", "conv1d", "conv2d", "not-a-layer", "noise"]))
    kw = data.draw(rate_kwargs())
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    batch = data.draw(st.integers(0, 3))
    seed = data.draw(st.integers(0, 2**31 - 1))
    device = data.draw(st.sampled_from(DEVICES))
    counts = COUNTS.setdefault(
        f"layers.{'GaussianNoise' if kind == 'noise' else 'DropConnect'}", Counter()
    )
    g = torch.Generator(device=device).manual_seed(seed)
    if kind == "noise":
        std = data.draw(st.one_of(st.sampled_from([0.0, 0.3]), prob_values()))
        x = torch.randn(batch, 3, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
        try:
            valid = is_real(std) and math.isfinite(float(std)) and float(std) >= 0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            counts["invalid"] += 1
            with pytest.raises((ValueError, TypeError)):
                dl.GaussianNoise(std, generator=g)
            return
        counts["valid"] += 1
        layer = dl.GaussianNoise(std, generator=g)
        y = layer(x)
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
        assert torch.equal(layer.eval()(x), x)
        return
    torch.manual_seed(0)  # the wrapped layer's init only; masks use the seeded generator
    module, x = {
        "linear": (torch.nn.Linear(4, 3), torch.randn(batch, 4)),
        "conv1d": (torch.nn.Conv1d(2, 3, 3), torch.randn(batch, 2, 5)),
        "conv2d": (torch.nn.Conv2d(2, 3, 2), torch.randn(batch, 2, 4, 3)),
        "not-a-layer": (torch.nn.ReLU(), torch.randn(batch, 4)),
    }[kind]
    module, x = module.to(device, dtype), x.to(device, dtype)
    try:
        resolve_rate(kw, None)
        valid = kind != "not-a-layer"
    except Invalid:
        valid = False
    if not valid:
        counts["invalid"] += 1
        with pytest.raises((ValueError, TypeError)):
            dl.DropConnect(module, **kw, generator=g)
        return
    counts["valid"] += 1
    layer = dl.DropConnect(module, **kw, generator=g)
    y = layer(x)
    w = F.drop_connect_weight(
        module.weight, **kw, generator=torch.Generator(device=device).manual_seed(seed)
    )
    expected = (
        torch.nn.functional.linear(x, w, module.bias)
        if kind == "linear"
        else module._conv_forward(x, w, module.bias)
    )
    assert torch.equal(y, expected)
    assert torch.isfinite(y).all() or not fits(x, 1 / max(1e-300, 1 - resolve_rate(kw, None)[0]))
    assert torch.equal(layer.eval()(x), module(x))


@fuzz_settings(40)
@given(
    samples=st.one_of(st.integers(-2, 4), st.sampled_from([True, 2.0, "3", None])),
    has_dropout=st.booleans(),
    batch=st.integers(0, 3),
)
def test_fuzz_mc_predict(samples, has_dropout, batch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 2), dl.Dropout(0.5) if has_dropout else torch.nn.ReLU()
    )
    x = torch.randn(batch, 3)
    counts = COUNTS.setdefault("layers.mc_predict", Counter())
    valid = (
        isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1 and has_dropout
    )
    if not valid:
        counts["invalid"] += 1
        with pytest.raises((ValueError, TypeError)) as info:
            dl.mc_predict(net, x, samples=samples)
        assert str(info.value).strip()
        return
    counts["valid"] += 1
    out = dl.mc_predict(net, x, samples=samples)
    assert out.shape == (samples, batch, 2) and torch.isfinite(out).all()
    assert net.training  # restored


@fuzz_settings(60)
@given(data=st.data())
def test_fuzz_gaussian_sigma(data):
    kw = data.draw(rate_kwargs())
    if data.draw(st.booleans()):
        kw["sigma"] = data.draw(st.one_of(st.sampled_from([0.0, 0.5, 1e30]), prob_values()))
        if data.draw(st.booleans()):
            kw = {"sigma": kw["sigma"]}
    counts = COUNTS.setdefault("gaussian_sigma", Counter())
    try:
        if "sigma" in kw:
            if any(kw.get(k) is not None for k in ("rate", "keep")):
                raise Invalid("sigma with rate/keep")
            s = kw["sigma"]
            if not is_real(s) or not math.isfinite(float(s)) or float(s) < 0:
                raise Invalid("sigma")
            expected = float(s)
        else:
            expected = gaussian_sigma_of(kw)
    except Invalid:
        counts["invalid"] += 1
        with pytest.raises((ValueError, TypeError)) as info:
            F.gaussian_sigma(**kw)
        assert str(info.value).strip()
        return
    counts["valid"] += 1
    got = F.gaussian_sigma(**kw)
    assert math.isfinite(got) and got >= 0
    assert got == pytest.approx(expected, rel=1e-12)


@fuzz_settings(30)
@given(
    returns=st.sampled_from(["gaussian", "dropout", "none", "string", "raises"]),
    nested=st.booleans(),
    training=st.booleans(),
)
def test_fuzz_replace_dropout(returns, nested, training):
    def factory(rate):
        if returns == "raises":
            raise ValueError(f"no layer for rate {rate}")
        return {
            "gaussian": dl.GaussianDropout(rate),
            "dropout": dl.Dropout(rate),
            "none": None,
            "string": "layer",
        }[returns]

    inner = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.2))
    net = torch.nn.Sequential(inner, torch.nn.Dropout(0.4)) if nested else inner
    net.train(training)
    counts = COUNTS.setdefault("layers.replace_dropout", Counter())
    if returns in ("none", "string", "raises"):
        counts["invalid"] += 1
        with pytest.raises((ValueError, TypeError)) as info:
            dl.replace_dropout(net, factory)
        assert str(info.value).strip()
        return
    counts["valid"] += 1
    out = dl.replace_dropout(net, factory)
    swapped = [m for m in out.modules() if dl.is_dropout(m)]
    assert len(swapped) == (2 if nested else 1)
    assert not any(type(m) is torch.nn.Dropout for m in out.modules())
    assert all(m.training == training for m in swapped)
    assert out(torch.ones(2, 3)).shape == (2, 3)


def test_zz_report_counts():
    """Prints the calls made per op (for docs/reliability.md; run with -s)."""
    total = Counter()
    for name, c in sorted(COUNTS.items()):
        total.update(c)
        print(f"fuzz {name}: {c['valid']} valid, {c['invalid']} invalid")
    print(f"fuzz total: {total['valid']} valid, {total['invalid']} invalid calls")
