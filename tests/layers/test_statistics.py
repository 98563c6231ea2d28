"""Statistics of the masks and noise on >= 10^6 units, with 5-sigma bounds.

Every bound is five standard deviations of the estimator under the claimed distribution
(stated next to each check), so a correct layer fails with probability < 1e-6 per check
and the seeds are fixed anyway; a wrong rate, scale or variance misses by far more.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import droplab as dl
from droplab import functional as F

from .specs import gen

SHAPE = (1001, 1003)  # 1,004,003 units, non-square
N = SHAPE[0] * SHAPE[1]
RATES = [0.1, 0.5, 0.9]
# the statistics must hold on every path of the ops that have a fast kernel
BACKENDS = [
    "auto",
    "torch",
    pytest.param(
        "fast",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("droplab.kernels") is None, reason="no droplab.kernels"
        ),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", RATES)
def test_dropout_dropped_fraction_binomial(rate, backend):
    y = F.dropout(torch.ones(SHAPE), rate, generator=gen(1), backend=backend)
    frac = (y == 0).double().mean().item()
    # dropped count ~ Binomial(N, rate): sd of the fraction is sqrt(rate (1 - rate) / N)
    assert abs(frac - rate) <= 5 * math.sqrt(rate * (1 - rate) / N)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", RATES)
def test_inverted_dropout_is_unbiased(rate, backend):
    x = torch.randn(SHAPE, generator=gen(2), dtype=torch.float64)
    y = F.dropout(x, rate, generator=gen(3), backend=backend)
    keep = 1 - rate
    # sum(y - x) = sum x_i (m_i / keep - 1), variance sum x_i^2 * rate / keep
    bound = 5 * math.sqrt(rate / keep * (x**2).sum().item())
    assert abs((y - x).sum().item()) <= bound
    assert torch.equal(F.dropout(x, rate, training=False), x)


@pytest.mark.parametrize("rate", RATES)
def test_classic_scaling_train_mean_equals_eval_output(rate):
    keep = 1 - rate
    x = torch.ones(SHAPE)
    y = F.dropout(x, rate, scaling="classic", generator=gen(4))
    assert set(y.unique().tolist()) <= {0.0, 1.0}  # no scaling in training
    # mean of Bernoulli(keep) over N units: sd sqrt(keep rate / N)
    assert abs(y.double().mean().item() - keep) <= 5 * math.sqrt(keep * rate / N)
    torch.testing.assert_close(F.dropout(x, rate, scaling="classic", training=False), keep * x)
    layer = dl.Dropout(keep=keep, scaling="classic").eval()
    torch.testing.assert_close(layer(x), keep * x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_masks_are_unbiased(dtype):
    rate = 0.3
    y = F.dropout(torch.ones(SHAPE, dtype=dtype), rate, generator=gen(5))
    frac = (y == 0).double().mean().item()
    assert abs(frac - rate) <= 5 * math.sqrt(rate * (1 - rate) / N)  # Binomial(N, rate)


def test_masks_independent_across_examples():
    rate = 0.3
    y = F.dropout(torch.ones(2, N // 2), rate, generator=gen(6))
    agree = ((y[0] == 0) == (y[1] == 0)).double().mean().item()
    # independent masks agree with probability keep^2 + rate^2, Binomial(N / 2, p) sd
    p = (1 - rate) ** 2 + rate**2
    assert abs(agree - p) <= 5 * math.sqrt(p * (1 - p) / (N // 2))


def test_rate_one_gives_zeros_not_nan():
    x = torch.randn(3, 5)
    for y in [
        F.dropout(x, 1.0),
        F.dropout(x, keep=0.0, scaling="classic"),
        F.fixed_count_dropout(x, 1.0),
        F.alpha_dropout(x, 1.0),
        F.spatial_dropout(x[None], 1.0),
        F.drop_block(x[None], 1.0, 2),
        F.drop_path(x, 1.0),
        F.drop_connect_weight(x, 1.0),
    ]:
        assert torch.equal(y.reshape(x.shape), torch.zeros_like(x))


def test_fixed_count_exact_per_example_and_uniform_over_units():
    rows, n, rate = 30011, 37, 0.3  # 1,110,407 units
    k = round(rate * n)  # 11
    x = torch.ones(rows, n)
    y = F.fixed_count_dropout(x, rate, generator=gen(7))
    assert ((y == 0).sum(dim=-1) == k).all()  # exact per example
    kept = (n - k) / n
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / kept))
    # each unit dropped with probability k / n, independently across the rows
    p = k / n
    col = (y == 0).double().mean(dim=0)
    assert ((col - p).abs() <= 5 * math.sqrt(p * (1 - p) / rows)).all()
    assert len({tuple(r) for r in (y[:200] == 0).tolist()}) > 190  # fresh subset per row
    # classic: unscaled in training, exact kept fraction in eval
    y_c = F.fixed_count_dropout(torch.ones(4, 7), 0.5, scaling="classic", generator=gen(1))
    assert set(y_c.unique().tolist()) == {0.0, 1.0} and ((y_c == 0).sum(-1) == 4).all()
    torch.testing.assert_close(
        F.fixed_count_dropout(torch.ones(4, 7), 0.5, scaling="classic", training=False),
        torch.full((4, 7), 3 / 7),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_gaussian_dropout_mean_and_variance(rate, backend):
    sigma2 = rate / (1 - rate)  # variance of inverted Bernoulli dropout at this rate
    x = torch.ones(SHAPE, dtype=torch.float64)
    y = F.gaussian_dropout(x, rate, generator=gen(8), backend=backend)
    # y ~ N(1, sigma2): mean sd sqrt(sigma2 / N); sample variance sd sigma2 sqrt(2 / (N - 1))
    assert abs(y.mean().item() - 1) <= 5 * math.sqrt(sigma2 / N)
    assert abs(y.var().item() - sigma2) <= 5 * sigma2 * math.sqrt(2 / (N - 1))
    b = F.dropout(torch.ones(SHAPE, dtype=torch.float64), rate, generator=gen(9))
    # the Bernoulli multiplier has the same variance (its sample variance has sd
    # sqrt((mu4 - var^2) / N) with mu4 <= var^2 / (keep rate) for a two-point law)
    var_b = sigma2
    assert abs(b.var().item() - var_b) <= 5 * math.sqrt(var_b**2 / (rate * (1 - rate)) / N)
    assert dl.GaussianDropout(sigma=math.sqrt(sigma2)).sigma == pytest.approx(
        dl.GaussianDropout(rate).sigma
    )


def test_gaussian_noise_mean_and_variance():
    std = 0.7
    x = torch.full(SHAPE, 2.0, dtype=torch.float64)
    y = F.gaussian_noise(x, std, generator=gen(10)) - x
    assert abs(y.mean().item()) <= 5 * std / math.sqrt(N)  # N(0, std^2) mean
    assert abs(y.var().item() - std**2) <= 5 * std**2 * math.sqrt(2 / (N - 1))
    assert torch.equal(F.gaussian_noise(x, std, training=False), x)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_standard_moments(rate):
    x = torch.randn(SHAPE, generator=gen(11), dtype=torch.float64)
    y = F.alpha_dropout(x, rate, generator=gen(12))
    m = y.mean().item()
    var = y.var().item()
    mu4 = ((y - m) ** 4).mean().item()
    assert abs(m) <= 5 / math.sqrt(N)  # sd of a mean of N units with variance 1
    assert abs(var - 1) <= 5 * math.sqrt((mu4 - 1) / N)  # sd of the sample variance
    torch.testing.assert_close(dl.AlphaDropout(rate).eval()(x), x)


def _mode(t: torch.Tensor) -> torch.Tensor:
    values, counts = t.unique(return_counts=True)
    return values[counts.argmax()]


def test_alpha_dropout_matches_torch_constants():
    # torch's alpha_dropout uses the same affine map; compare the transform on fixed masks
    rate = 0.3
    x = torch.randn(400, 500, generator=gen(13), dtype=torch.float64)
    y = F.alpha_dropout(x, rate, generator=gen(14))
    dropped = y == _mode(y)  # every dropped unit takes the same value a * alpha' + b
    ref = torch.nn.functional.alpha_dropout
    with torch.random.fork_rng():
        torch.manual_seed(0)
        t = ref(x, rate, training=True)
    t_dropped = t == _mode(t)
    torch.testing.assert_close(_mode(y), _mode(t))  # the dropped value agrees

    def line(inp, out):  # kept units lie exactly on out = a * inp + b: fit (a, b)
        design = torch.stack([inp, torch.ones_like(inp)], dim=1)  # (n_kept, 2)
        return torch.linalg.lstsq(design, out[:, None]).solution.flatten()

    torch.testing.assert_close(line(x[~dropped], y[~dropped]), line(x[~t_dropped], t[~t_dropped]))


@pytest.mark.parametrize("rate", [0.2, 0.7])
def test_spatial_dropout_drops_whole_channels(rate):
    y = F.spatial_dropout(torch.ones(1009, 997, 3), rate, generator=gen(15))  # 1,006,573 channels
    dropped = y[..., 0] == 0
    assert torch.equal((y == 0), dropped[..., None].expand_as(y))  # whole channels
    n = dropped.numel()
    assert abs(dropped.double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [0.2, 0.7])
def test_drop_path_drops_whole_examples(rate):
    n = 1_000_003
    y = F.drop_path(torch.ones(n, 2, 3), rate, generator=gen(16))
    dropped = y[:, 0, 0] == 0
    assert torch.equal(y == 0, dropped[:, None, None].expand_as(y))
    assert abs(dropped.double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - rate)))
    y2 = F.drop_path(torch.ones(7, 2), rate, scale_by_keep=False, generator=gen(1))
    assert set(y2.unique().tolist()) <= {0.0, 1.0}


def test_drop_connect_weight_fraction_and_fresh_masks():
    rate = 0.4
    w = torch.ones(SHAPE)
    m = F.drop_connect_weight(w, rate, generator=gen(17))
    assert abs((m == 0).double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / N)
    layer = dl.DropConnect(torch.nn.Linear(31, 17), 0.5, generator=gen(18))
    x = torch.randn(5, 31)
    assert not torch.equal(layer(x), layer(x))  # a fresh mask per forward


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_feature_alpha_dropout_keeps_standard_moments_and_drops_channels(rate):
    # the same bounds as test_alpha_dropout_keeps_standard_moments: per unit the map is that
    # of alpha dropout, only the mask is shared along the spatial dims
    x = torch.randn(200, 500, 10, generator=gen(19), dtype=torch.float64)
    y = F.feature_alpha_dropout(x, rate, generator=gen(20))
    m, var = y.mean().item(), y.var().item()
    mu4 = ((y - m) ** 4).mean().item()
    channels = 200 * 500  # units of one channel share a mask: the sd counts channels
    assert abs(m) <= 5 / math.sqrt(channels)
    assert abs(var - 1) <= 5 * math.sqrt((mu4 - 1) / channels)
    dropped = y == _mode(y)
    assert torch.equal(dropped, dropped[..., :1].expand_as(y))  # whole channels
    frac = dropped[..., 0].double().mean().item()
    assert abs(frac - rate) <= 5 * math.sqrt(rate * (1 - rate) / channels)
    # torch's FeatureAlphaDropout is the oracle for the dropped value
    t = torch.nn.functional.feature_alpha_dropout(x, rate, training=True)
    torch.testing.assert_close(_mode(y), _mode(t))


@pytest.mark.parametrize("rate", [0.2, 0.7])
def test_drop_path_batch_mode_drops_the_whole_batch(rate):
    n = 20_000  # calls, each one Bernoulli(keep) draw for the batch: 5 sigma of Binomial
    g = gen(21)
    x = torch.ones(3, 2)
    dropped = 0
    for _ in range(n):
        y = F.drop_path(x, rate, mode="batch", generator=g)
        assert torch.equal(y, torch.zeros_like(x)) or torch.equal(y, x / (1 - rate))
        dropped += int(y[0, 0] == 0)
    assert abs(dropped / n - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)
