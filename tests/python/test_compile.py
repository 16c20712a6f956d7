"""torch.library registration: opcheck on the ops, and torch.compile(fullgraph=True) of a small
model giving the eager outputs and gradients (PyTorch >= 2.4, where custom_op exists)."""

import pytest
import torch

import flashattn
from flashattn import _ops, flash_attn_func, flash_attn_varlen_func

pytestmark = pytest.mark.skipif(not _ops.HAS_CUSTOM_OP,
                                reason="torch.library.custom_op needs PyTorch >= 2.4")


def _fwd_args(varlen=False, dropout_p=0.0, return_softmax=False, causal=True, alibi=False,
              dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    if varlen:
        q = torch.randn(7, 4, 16, generator=generator).to(dtype).requires_grad_()
        k = torch.randn(9, 2, 16, generator=generator).to(dtype).requires_grad_()
        v = torch.randn(9, 2, 16, generator=generator).to(dtype).requires_grad_()
        cu_q = torch.tensor([0, 3, 3, 7], dtype=torch.int32)
        cu_k = torch.tensor([0, 4, 5, 9], dtype=torch.int32)
        seqlens = (cu_q, cu_k, 4, 4)
    else:
        q = torch.randn(2, 5, 4, 16, generator=generator).to(dtype).requires_grad_()
        k = torch.randn(2, 6, 2, 16, generator=generator).to(dtype).requires_grad_()
        v = torch.randn(2, 6, 2, 16, generator=generator).to(dtype).requires_grad_()
        seqlens = (None, None, 0, 0)
    slopes = torch.rand(4, generator=generator) if alibi else None
    rng_state = torch.tensor([1234, 5], dtype=torch.int64)
    return (q, k, v, *seqlens, dropout_p, 0.25, causal, -1, -1, 0.0, slopes, False,
            return_softmax, rng_state)


OPCHECK_CASES = {
    "dense": {},
    "dense-bf16-alibi": {"dtype": torch.bfloat16, "alibi": True},
    "varlen": {"varlen": True},
    "dropout-probs": {"dropout_p": 0.2, "return_softmax": True},
    "varlen-dropout-probs": {"varlen": True, "dropout_p": 0.2, "return_softmax": True},
}


@pytest.mark.parametrize("case", OPCHECK_CASES.keys())
def test_opcheck_fwd(case):
    torch.library.opcheck(torch.ops.flashattn.fwd.default, _fwd_args(**OPCHECK_CASES[case]))


@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
def test_opcheck_bwd(varlen):
    args = _fwd_args(varlen=varlen, dropout_p=0.1)
    with torch.no_grad():
        out, lse, _ = torch.ops.flashattn.fwd(*args)
    q, k, v = (t.detach() for t in args[:3])
    (cu_q, cu_k, max_q, max_k, dropout_p, scale, causal, left, right, softcap, slopes,
     deterministic, _, rng_state) = args[3:]
    bwd_args = (torch.randn_like(out), q, k, v, out, lse, cu_q, cu_k, max_q, max_k, dropout_p,
                scale, causal, left, right, softcap, slopes, deterministic, rng_state)
    torch.library.opcheck(torch.ops.flashattn.bwd.default, bwd_args)


class CausalSelfAttention(torch.nn.Module):
    def __init__(self, dim=32, heads=4, kv_heads=2):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.qkv = torch.nn.Linear(dim, (heads + 2 * kv_heads) * self.head_dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        batch, seqlen, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim,
             self.kv_heads * self.head_dim], dim=-1)
        q = q.view(batch, seqlen, self.heads, self.head_dim)
        k = k.view(batch, seqlen, self.kv_heads, self.head_dim)
        v = v.view(batch, seqlen, self.kv_heads, self.head_dim)
        out = flash_attn_func(q, k, v, causal=True, window_size=(6, 0), softcap=5.0)
        return self.proj(out.reshape(batch, seqlen, -1))


def _eager_and_compiled(model, inputs, compiled):
    outs, grads = [], []
    for fn in (model, compiled):
        model.zero_grad()
        out = fn(*inputs)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    return outs, grads


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(backend):
    torch.manual_seed(0)
    model = CausalSelfAttention()
    x = torch.randn(2, 12, 32)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    (out_eager, out_compiled), (grads_eager, grads_compiled) = _eager_and_compiled(
        model, (x,), compiled)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-5, atol=1e-5)
    for eager, comp in zip(grads_eager, grads_compiled):
        torch.testing.assert_close(comp, eager, rtol=1e-4, atol=1e-5)


def test_compile_fullgraph_varlen_with_lse():
    q, k, v, cu_q, cu_k, max_q, max_k = _fwd_args(varlen=True)[:7]

    def fn(q, k, v):
        out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=True,
                                             return_attn_probs=True)
        return out * 2, lse

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    out_eager, lse_eager = fn(q, k, v)
    out_compiled, lse_compiled = compiled(q, k, v)
    torch.testing.assert_close(out_compiled, out_eager)
    torch.testing.assert_close(lse_compiled, lse_eager)
    grads_eager = torch.autograd.grad(out_eager.sum(), [q, k, v])
    grads_compiled = torch.autograd.grad(out_compiled.sum(), [q, k, v])
    for eager, comp in zip(grads_eager, grads_compiled):
        torch.testing.assert_close(comp, eager)


def test_compile_fullgraph_with_dropout_traces():
    q, k, v = _fwd_args()[:3]

    def fn(q, k, v):
        return flash_attn_func(q, k, v, dropout_p=0.25)

    torch._dynamo.reset()
    out = torch.compile(fn, backend="aot_eager", fullgraph=True)(q, k, v)
    out.sum().backward()
    assert out.shape == q.shape and q.grad is not None


def test_ops_are_registered():
    assert hasattr(torch.ops.flashattn, "fwd") and hasattr(torch.ops.flashattn, "bwd")
    assert flashattn.flash_attn_func is flash_attn_func


def test_eager_custom_op_matches_the_direct_path():
    args = _fwd_args(causal=True, alibi=True)
    out_op, lse_op, _ = torch.ops.flashattn.fwd(*args)
    out_direct, lse_direct, _ = _ops.attention(*args)
    torch.testing.assert_close(out_op, out_direct, rtol=0, atol=0)
    torch.testing.assert_close(lse_op, lse_direct, rtol=0, atol=0)
    grads_op = torch.autograd.grad(out_op.sum(), args[:3])
    grads_direct = torch.autograd.grad(out_direct.sum(), args[:3])
    for a, b in zip(grads_op, grads_direct):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
