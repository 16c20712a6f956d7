"""Forward and gradients of the flash_attn functions on CPU tensors against the fp64 reference,
one row per case; the DESIGN.md criterion (2x for out, 3x for gradients)."""

import pytest
import torch

from attention_reference import assert_close, dense_reference, varlen_reference
from flashattn import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]

# batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, head_dim_v, options
DENSE_CASES = {
    "plain": (2, 5, 7, 4, 4, 16, 16, {}),
    "gqa": (2, 6, 6, 6, 2, 32, 32, {}),
    "mqa-causal": (1, 9, 9, 4, 1, 8, 8, {"causal": True}),
    "causal-sq<sk": (2, 3, 8, 2, 2, 16, 16, {"causal": True}),
    "causal-sq>sk": (2, 8, 3, 2, 2, 16, 16, {"causal": True}),  # first rows see no key
    "window": (1, 10, 10, 2, 2, 16, 16, {"window_size": (3, 1)}),
    "window-causal": (2, 7, 11, 2, 1, 16, 16, {"window_size": (2, 0), "causal": True}),
    "softcap": (2, 6, 9, 2, 2, 16, 16, {"softcap": 2.0}),
    "alibi-heads": (2, 6, 9, 4, 2, 16, 16, {"alibi": "heads"}),
    "alibi-batch-causal": (2, 7, 7, 2, 2, 16, 16, {"alibi": "batch", "causal": True}),
    "scale": (1, 4, 5, 2, 2, 24, 24, {"softmax_scale": 0.3}),
    "everything": (2, 6, 8, 4, 2, 16, 16,
                   {"causal": True, "window_size": (4, -1), "softcap": 3.0, "alibi": "heads"}),
    "hdim1": (1, 3, 4, 1, 1, 1, 1, {}),
    "hdim256": (1, 3, 5, 1, 1, 256, 256, {}),
    "hdim-v": (1, 4, 6, 2, 2, 32, 16, {}),
    "seqlen1": (3, 1, 1, 2, 2, 8, 8, {"causal": True}),
}

# cu_seqlens lengths q, k; heads_q, heads_kv, head_dim, options
VARLEN_CASES = {
    "plain": ([3, 5, 2], [4, 6, 1], 2, 2, 16, {}),
    "empty-sequence": ([3, 0, 4], [3, 2, 5], 2, 2, 16, {}),
    "empty-keys": ([2, 3], [0, 4], 2, 1, 8, {}),
    "causal-gqa": ([4, 7], [6, 7], 4, 2, 16, {"causal": True}),
    "window-alibi": ([5, 3, 6], [5, 8, 6], 2, 2, 16, {"window_size": (2, 2), "alibi": "batch"}),
    "softcap": ([5, 1], [7, 3], 2, 2, 16, {"softcap": 4.0, "causal": True}),
}


def _inputs(shapes, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator).to(dtype).requires_grad_() for shape in shapes]


def _alibi(kind, batch, heads):
    if kind is None:
        return None
    slopes = torch.rand(batch, heads, generator=torch.Generator().manual_seed(7)) * 0.5 + 0.1
    return slopes if kind == "batch" else slopes[0].contiguous()


def _split_options(options, batch, heads):
    options = dict(options)
    alibi = _alibi(options.pop("alibi", None), batch, heads)
    return options, alibi


def _reference_options(options):
    return {key: value for key, value in options.items() if key != "deterministic"}


def _check_against_reference(run, reference, tensors, out_grad_seed=3):
    """Runs `run` and `reference` (on fp64 and on the low-precision copies) with gradients."""
    out = run(*tensors)
    ref64_inputs = [t.detach().double().requires_grad_() for t in tensors]
    ref_lp_inputs = [t.detach().clone().requires_grad_() for t in tensors]
    ref = reference(*ref64_inputs)
    ref_lowp = reference(*ref_lp_inputs)
    assert out.shape == ref.shape and out.dtype == tensors[0].dtype
    assert_close(out, ref, ref_lowp, 2.0)

    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(out_grad_seed))
    grads = torch.autograd.grad(out, tensors, dout.to(out.dtype))
    grads_ref = torch.autograd.grad(ref, ref64_inputs, dout.double(), allow_unused=True)
    grads_lowp = torch.autograd.grad(ref_lowp, ref_lp_inputs, dout.to(out.dtype),
                                     allow_unused=True)
    for name, grad, grad_ref, grad_lowp in zip("qkv", grads, grads_ref, grads_lowp):
        if grad_ref is None:  # no key reaches any query
            grad_ref = grad_lowp = torch.zeros_like(grad, dtype=torch.float64)
        assert grad.dtype == tensors[0].dtype
        assert_close(grad, grad_ref, grad_lowp, 3.0, name=f"d{name}")
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", DENSE_CASES.keys())
def test_dense(case, dtype):
    batch, sq, sk, hq, hk, d, dv, options = DENSE_CASES[case]
    options, alibi = _split_options(options, batch, hq)
    q, k, v = _inputs([(batch, sq, hq, d), (batch, sk, hk, d), (batch, sk, hk, dv)], dtype, 1)

    def run(q, k, v):
        return flash_attn_func(q, k, v, alibi_slopes=alibi, **options)

    def reference(q, k, v):
        return dense_reference(q, k, v, alibi_slopes=alibi, **_reference_options(options))

    _check_against_reference(run, reference, [q, k, v])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", VARLEN_CASES.keys())
def test_varlen(case, dtype):
    lens_q, lens_k, hq, hk, d, options = VARLEN_CASES[case]
    options, alibi = _split_options(options, len(lens_q), hq)
    cu_q = torch.tensor([0] + lens_q, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    cu_k = torch.tensor([0] + lens_k, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    q, k, v = _inputs([(sum(lens_q), hq, d), (sum(lens_k), hk, d), (sum(lens_k), hk, d)], dtype, 2)

    def run(q, k, v):
        return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k),
                                      alibi_slopes=alibi, **options)

    def reference(q, k, v):
        return varlen_reference(q, k, v, cu_q, cu_k, alibi_slopes=alibi, **options)

    _check_against_reference(run, reference, [q, k, v])


def test_lse_dense_and_varlen_layouts():
    q, k, v = _inputs([(2, 5, 3, 8), (2, 6, 3, 8), (2, 6, 3, 8)], torch.float32, 4)
    out, lse, s_dmask = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * 8 ** -0.5
    visible = torch.ones(5, 6, dtype=torch.bool).tril(1)
    lse_ref = scores.masked_fill(~visible, float("-inf")).logsumexp(-1)
    assert lse.shape == (2, 3, 5) and lse.dtype == torch.float32
    torch.testing.assert_close(lse.double(), lse_ref, rtol=1e-4, atol=0)
    assert s_dmask.numel() == 0  # as flash_attn: no S_dmask without dropout

    cu = torch.tensor([0, 5, 10], dtype=torch.int32)
    _, lse_varlen, _ = flash_attn_varlen_func(
        q.flatten(0, 1), k[:, :5].flatten(0, 1), v[:, :5].flatten(0, 1), cu, cu, 5, 5,
        causal=True, return_attn_probs=True)
    assert lse_varlen.shape == (3, 10)  # [heads, total_q]
    lse_dense = flash_attn_func(q, k[:, :5], v[:, :5], causal=True, return_attn_probs=True)[1]
    torch.testing.assert_close(lse_varlen, lse_dense.permute(1, 0, 2).flatten(1))


def test_fully_masked_rows_give_zero_and_infinite_lse():
    q, k, v = _inputs([(1, 6, 2, 8), (1, 2, 2, 8), (1, 2, 2, 8)], torch.float32, 5)
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert torch.equal(out[:, :4], torch.zeros_like(out[:, :4]))
    assert torch.isinf(lse[..., :4]).all() and (lse[..., :4] > 0).all()
    out.sum().backward()
    assert not torch.isnan(q.grad).any()


def test_packed_variants_match_unpacked():
    generator = torch.Generator().manual_seed(6)
    qkv = torch.randn(2, 5, 3, 4, 16, generator=generator, requires_grad=True)
    kv = torch.randn(2, 7, 2, 2, 16, generator=generator, requires_grad=True)
    q = torch.randn(2, 5, 4, 16, generator=generator, requires_grad=True)

    packed = flash_attn_qkvpacked_func(qkv, causal=True)
    unpacked = flash_attn_func(*qkv.unbind(2), causal=True)
    torch.testing.assert_close(packed, unpacked, rtol=0, atol=0)
    grad_packed, = torch.autograd.grad(packed.sum(), qkv)
    grad_unpacked, = torch.autograd.grad(unpacked.sum(), qkv)
    torch.testing.assert_close(grad_packed, grad_unpacked, rtol=0, atol=0)

    torch.testing.assert_close(flash_attn_kvpacked_func(q, kv, window_size=(2, 2)),
                               flash_attn_func(q, *kv.unbind(2), window_size=(2, 2)),
                               rtol=0, atol=0)

    cu = torch.tensor([0, 4, 4, 9], dtype=torch.int32)
    qkv_varlen = qkv.detach().flatten(0, 1)[:9].requires_grad_()
    out = flash_attn_varlen_qkvpacked_func(qkv_varlen, cu, 5, causal=True)
    expected = flash_attn_varlen_func(*qkv_varlen.unbind(1), cu, cu, 5, 5, causal=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.sum().backward()
    assert qkv_varlen.grad.shape == qkv_varlen.shape

    cu_k = torch.tensor([0, 3, 6, 14], dtype=torch.int32)
    kv_varlen = kv.detach().flatten(0, 1)
    out = flash_attn_varlen_kvpacked_func(q.detach().flatten(0, 1)[:9], kv_varlen, cu, cu_k, 5, 8)
    expected = flash_attn_varlen_func(q.detach().flatten(0, 1)[:9], *kv_varlen.unbind(1), cu,
                                      cu_k, 5, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_strided_inputs_and_non_contiguous_last_dim():
    generator = torch.Generator().manual_seed(8)
    base = torch.randn(2, 4, 6, 16, generator=generator)  # [batch, heads, seqlen, dim]
    q = base.transpose(1, 2)  # strided view, last dim contiguous: used in place
    k = torch.randn(2, 16, 6, 4, generator=generator).permute(0, 2, 3, 1)  # last dim strided
    v = torch.randn(2, 6, 4, 16, generator=generator)
    assert k.stride(-1) != 1
    out = flash_attn_func(q, k, v)  # copied, as flash_attn does
    expected = flash_attn_func(q.contiguous(), k.contiguous(), v)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
def test_deterministic_reaches_the_library(monkeypatch, deterministic, varlen):
    from flashattn import _capi
    seen = []
    library_backward = _capi.lib.flashattn_backward

    def recording_backward(params):  # a ctypes byref(BackwardArgs)
        seen.append(params._obj.deterministic)
        return library_backward(params)

    monkeypatch.setattr(_capi.lib, "flashattn_backward", recording_backward)
    generator = torch.Generator().manual_seed(9)
    q, k, v = [torch.randn(2, 6, 2, 16, generator=generator).requires_grad_() for _ in range(3)]
    if varlen:
        cu = torch.tensor([0, 6, 12], dtype=torch.int32)
        out = flash_attn_varlen_func(*(t.flatten(0, 1) for t in (q, k, v)), cu, cu, 6, 6,
                                     deterministic=deterministic)
    else:
        out = flash_attn_func(q, k, v, deterministic=deterministic)
    torch.autograd.grad(out.sum(), [q, k, v])
    assert seen == [int(deterministic)]
