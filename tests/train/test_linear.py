"""stacked_linear: the same numbers as baddbmm, in either layout, forward and backward."""

from __future__ import annotations

import pytest
import torch

from droplab.train.linear import narrow, stacked_linear


@pytest.mark.parametrize(
    ("B", "I", "O"), [(20, 64, 10), (20, 40, 64), (7, 5, 3), (4, 3, 5), (30, 16, 16)]
)
def test_matches_baddbmm_forward_and_backward(B, I, O):  # noqa: E741
    g = torch.Generator().manual_seed(B * I * O)
    K = 3
    h = torch.randn(K, B, I, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(K, I, O, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, 1, O, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(K, B, O, generator=g, dtype=torch.float64)
    y = stacked_linear(h, W, b)
    ref = torch.baddbmm(b, h, W)
    torch.testing.assert_close(y, ref)
    got = torch.autograd.grad(y, (h, W, b), up)
    want = torch.autograd.grad(ref, (h, W, b), up)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w)
        assert a.shape == w.shape and a.is_contiguous()
    if B * I * O <= 200:  # the numerical Jacobian is (K B O) x (K B I + K I O + K O)
        assert torch.autograd.gradcheck(stacked_linear, (h, W, b))
    with torch.no_grad():
        torch.testing.assert_close(stacked_linear(h, W, b), ref)


def test_narrow_rule_depends_on_shapes_only():
    assert narrow(100, 256, 10)  # the MNIST-1D head
    assert not narrow(100, 256, 256) and not narrow(100, 40, 256)
    assert not narrow(8, 256, 10)  # fewer rows than outputs


def test_input_gradient_skipped_when_not_needed():
    h = torch.randn(2, 5, 4)  # data: no grad
    W = torch.randn(2, 4, 3, requires_grad=True)
    b = torch.zeros(2, 1, 3, requires_grad=True)
    y = stacked_linear(h, W, b)
    gW, gb = torch.autograd.grad(y.sum(), (W, b))
    torch.testing.assert_close(gW, h.sum(1, keepdim=True).transpose(1, 2).expand(2, 4, 3))
    torch.testing.assert_close(gb, torch.full((2, 1, 3), 5.0))


def test_grad_buffers_give_the_same_gradients_in_reused_memory():
    from droplab.train.linear import GradBuffers

    g = torch.Generator().manual_seed(3)
    bufs = GradBuffers()
    ptrs = []
    for _ in range(2):
        h = torch.randn(3, 20, 40, generator=g, requires_grad=True)
        W = torch.randn(3, 40, 64, generator=g, requires_grad=True)
        b = torch.randn(3, 1, 64, generator=g, requires_grad=True)
        up = torch.randn(3, 20, 64, generator=g)
        got = torch.autograd.grad(stacked_linear(h, W, b, buffers=bufs, key=0), (h, W, b), up)
        want = torch.autograd.grad(torch.baddbmm(b, h, W), (h, W, b), up)
        for a, w in zip(got, want):
            torch.testing.assert_close(a, w)
        ptrs.append((got[1].data_ptr(), got[2].data_ptr()))
        del got  # the trainer's promise: a step's gradients are dead before the next
    assert ptrs[0] == ptrs[1]  # dW and db written into the same buffers both steps


def test_step_buffers_reuse_activations_and_input_gradients():
    """The trainer's layer outputs and input gradients live in reused memory and give the
    same numbers as baddbmm; a backward through a step whose buffers a later step
    overwrote is refused by autograd, not silently computed from overwritten values."""
    from droplab.train.linear import GradBuffers

    g = torch.Generator().manual_seed(4)
    bufs = GradBuffers()
    steps = []
    for _ in range(2):
        h = torch.randn(3, 20, 40, generator=g, requires_grad=True)
        W1 = torch.randn(3, 40, 64, generator=g, requires_grad=True)
        b1 = torch.randn(3, 1, 64, generator=g, requires_grad=True)
        W2 = torch.randn(3, 64, 48, generator=g, requires_grad=True)
        b2 = torch.randn(3, 1, 48, generator=g, requires_grad=True)
        a = stacked_linear(h, W1, b1, buffers=bufs, key=0)
        y = stacked_linear(a.pow(2), W2, b2, buffers=bufs, key=1)  # pow saves a
        steps.append((y, a, (h, W1, b1, W2, b2)))
    (y0, a0, _), (y1, a1, leaves) = steps
    assert (a0.data_ptr(), y0.data_ptr()) == (a1.data_ptr(), y1.data_ptr())  # reused
    h, W1, b1, W2, b2 = leaves
    ref = torch.baddbmm(b2, torch.baddbmm(b1, h, W1).pow(2), W2)
    torch.testing.assert_close(y1, ref)
    up = torch.randn(3, 20, 48, generator=g)
    for got, want in zip(torch.autograd.grad(y1, leaves, up), torch.autograd.grad(ref, leaves, up)):
        torch.testing.assert_close(got, want)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(y0, steps[0][2], up)  # step 0's saved output was overwritten
