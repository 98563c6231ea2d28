"""The same guarantees on CUDA (skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch

from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, evaluate, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

MEMBERS = [
    MemberConfig(seed=0, input_rate=0.2, hidden_rate=0.5),
    MemberConfig(seed=1, hidden_rate=0.3, lr=3e-3, max_norm=1.0),
    MemberConfig(seed=2, hidden_rate=0.4, dropout="gaussian"),
]


@pytest.mark.parametrize("masks", ["kernel", "torch"])
@pytest.mark.parametrize(
    "spec", [ModelSpec("mlp", widths=(16, 12)), ModelSpec("cnn1d", widths=(4, 5, 3))]
)
def test_cuda_batched_equals_alone(tiny, spec, masks):
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, select="last", masks=masks)
    members = MEMBERS if spec.kind == "mlp" else MEMBERS[:2]
    batched = fit(spec, tiny, members, cfg, device="cuda")
    for k, m in enumerate(members):
        alone = fit(spec, tiny, [m], cfg, device="cuda")
        for a, b in zip(batched.module(k).parameters(), alone.module(0).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        got = evaluate(batched.module(k), tiny.x_test, tiny.y_test)  # on CPU
        assert got["nll"] == pytest.approx(batched.members[k].metrics["test_nll"], rel=1e-4)


def test_cuda_generic_and_mc(tiny):
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, eval_mode="mc", mc_samples=3)
    spec = ModelSpec("mlp", widths=(8,), dropout="fixed-count")
    res = fit(spec, tiny, [MemberConfig(seed=0, hidden_rate=0.3)], cfg, device="cuda")
    assert res.path == "generic" and "det_test_acc" in res.members[0].metrics
    res = fit(
        ModelSpec("mlp", widths=(8,)),
        tiny,
        [MemberConfig(seed=0, hidden_rate=0.3)],
        cfg,
        device="cuda",
    )
    assert res.path == "fast" and "det_test_acc" in res.members[0].metrics


def test_cuda_patience_retires_members(tiny):
    """Retirement on CUDA: each member as when trained alone (tolerance: GEMM rounding
    depends on K), its selected weights at its own index."""
    from dataclasses import replace

    members = [replace(m, lr=lr) for m, lr in zip(MEMBERS, (3e-2, 3e-4, 5e-2))]
    cfg = TrainConfig(epochs=25, batch_size=32, patience=3, curve_splits=("val",))
    batched = fit(ModelSpec("mlp", widths=(16, 12)), tiny, members, cfg, device="cuda")
    stopped = [m.metrics["stopped_epoch"] for m in batched.members]
    assert min(stopped) < max(stopped)
    for k, m in enumerate(members):
        alone = fit(ModelSpec("mlp", widths=(16, 12)), tiny, [m], cfg, device="cuda")
        assert alone.members[0].metrics["stopped_epoch"] == stopped[k]
        for a, b in zip(batched.module(k).parameters(), alone.module(0).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        got = evaluate(batched.module(k), tiny.x_test, tiny.y_test)  # on CPU
        assert got["nll"] == pytest.approx(batched.members[k].metrics["test_nll"], rel=1e-4)
