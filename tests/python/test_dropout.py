"""Dropout through return_attn_probs: the S_dmask sign is the mask that the forward and the
backward applied, its magnitude the softmax probabilities; seeds come from torch.manual_seed."""

import pytest
import torch

from attention_reference import assert_close, dense_probs, dense_reference, varlen_reference
from flashattn import flash_attn_func, flash_attn_varlen_func

P = 0.3

# name, batch, seqlen_q, seqlen_k, heads_q, heads_kv, options
DENSE_CASES = {
    "plain": (2, 6, 9, 2, 2, {}),
    "gqa-causal": (1, 9, 7, 4, 2, {"causal": True}),
    "alibi-softcap-window": (2, 5, 8, 2, 1, {"alibi": True, "softcap": 3.0,
                                             "window_size": (3, 2)}),
}


def _inputs(shapes, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=generator).to(dtype).requires_grad_() for s in shapes]


def _with_grads(out, ref, ref_lowp, tensors, ref64, reflp):
    assert_close(out, ref, ref_lowp, 2.0)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, tensors, dout.to(out.dtype))
    grads_ref = torch.autograd.grad(ref, ref64, dout.double())
    grads_lowp = torch.autograd.grad(ref_lowp, reflp, dout.to(out.dtype))
    for name, g, gr, gl in zip("qkv", grads, grads_ref, grads_lowp):
        assert_close(g, gr, gl, 3.0, name=f"d{name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("case", DENSE_CASES.keys())
def test_dense_dropout_matches_reference_with_returned_mask(case, dtype):
    batch, sq, sk, hq, hk, options = DENSE_CASES[case]
    options = dict(options)
    alibi = torch.rand(hq) * 0.3 if options.pop("alibi", False) else None
    q, k, v = _inputs([(batch, sq, hq, 16), (batch, sk, hk, 16), (batch, sk, hk, 16)], dtype)
    torch.manual_seed(11)
    out, lse, s_dmask = flash_attn_func(q, k, v, dropout_p=P, alibi_slopes=alibi,
                                        return_attn_probs=True, **options)
    assert s_dmask.shape == (batch, hq, sq, sk) and s_dmask.dtype == dtype
    keep = s_dmask >= 0

    ref64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
    reflp = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = dense_reference(*ref64, dropout_p=P, keep=keep, alibi_slopes=alibi, **options)
    ref_lowp = dense_reference(*reflp, dropout_p=P, keep=keep, alibi_slopes=alibi, **options)
    _with_grads(out, ref, ref_lowp, [q, k, v], ref64, reflp)

    # |S_dmask| is the softmax itself (what return_attn_probs promises).
    probs = dense_probs(*[t.detach().double() for t in (q, k)], alibi_slopes=alibi, **options)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(s_dmask.abs().double(), probs, rtol=0, atol=tolerance)


def test_varlen_dropout_matches_reference_with_returned_mask():
    lens_q, lens_k = [4, 0, 6], [5, 3, 6]
    cu_q = torch.tensor([0, 4, 4, 10], dtype=torch.int32)
    cu_k = torch.tensor([0, 5, 8, 14], dtype=torch.int32)
    q, k, v = _inputs([(10, 2, 8), (14, 2, 8), (14, 2, 8)], torch.float32, 3)
    torch.manual_seed(5)
    out, _, s_dmask = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 6, 6, dropout_p=P,
                                             causal=True, return_attn_probs=True)
    assert s_dmask.shape == (3, 2, 6, 6)
    keep = s_dmask >= 0
    ref64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
    reflp = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = varlen_reference(*ref64, cu_q, cu_k, keep=keep, dropout_p=P, causal=True)
    ref_lowp = varlen_reference(*reflp, cu_q, cu_k, keep=keep, dropout_p=P, causal=True)
    _with_grads(out, ref, ref_lowp, [q, k, v], ref64, reflp)


def test_manual_seed_repeats_and_seeds_differ():
    q, k, v = _inputs([(2, 32, 2, 16), (2, 32, 2, 16), (2, 32, 2, 16)], torch.float32)

    def run(seed):
        torch.manual_seed(seed)
        out = flash_attn_func(q, k, v, dropout_p=P)
        grads = torch.autograd.grad(out.sum(), [q, k, v])
        return out.detach(), grads

    out_a, grads_a = run(1)
    out_b, grads_b = run(1)
    out_c, _ = run(2)
    assert torch.equal(out_a, out_b)
    for a, b in zip(grads_a, grads_b):
        assert torch.equal(a, b)
    assert not torch.equal(out_a, out_c)


def test_keep_fraction_is_one_minus_p():
    q, k, v = _inputs([(2, 64, 2, 8), (2, 64, 2, 8), (2, 64, 2, 8)], torch.float32)
    torch.manual_seed(0)
    _, _, s_dmask = flash_attn_func(q, k, v, dropout_p=P, return_attn_probs=True)
    kept = (s_dmask >= 0).double().mean().item()
    assert abs(kept - (1 - P)) < 0.02, kept


def test_zero_dropout_is_deterministic_and_mask_empty():
    q, k, v = _inputs([(1, 8, 2, 8), (1, 8, 2, 8), (1, 8, 2, 8)], torch.float32)
    out1, _, mask = flash_attn_func(q, k, v, dropout_p=0.0, return_attn_probs=True)
    out2 = flash_attn_func(q, k, v)
    assert mask.numel() == 0 and torch.equal(out1, out2)
