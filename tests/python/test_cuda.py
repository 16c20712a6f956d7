"""CUDA tensors: forward and gradients against the fp64 reference (the DESIGN.md criterion, 2x
for out, 3x for gradients), the current (non-default) stream, CUDA-graph capture and replay of
the forward and of forward + backward, dropout masks equal to the CPU backend's and applied by
the backward, bitwise reproducible deterministic gradients."""

import pytest
import torch

import flashattn
from flashattn import FlashAttnUnsupportedError
from attention_reference import assert_close, dense_reference, varlen_reference
from flashattn import flash_attn_func, flash_attn_interface, flash_attn_varlen_func

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not flashattn.cuda_available(),
    reason="needs a CUDA device and a flashattn build with CUDA")

DTYPES = [torch.float16, torch.bfloat16]

# batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, options
CASES = {
    "plain": (2, 64, 80, 4, 4, 64, {}),
    "gqa-causal": (2, 100, 100, 8, 2, 128, {"causal": True}),
    "causal-sq>sk": (1, 90, 33, 2, 2, 64, {"causal": True}),
    "window": (1, 130, 130, 2, 1, 64, {"window_size": (17, 5)}),
    "softcap-alibi": (2, 70, 95, 4, 2, 96, {"softcap": 8.0, "alibi": True}),
    "hdim-odd": (1, 33, 47, 2, 2, 40, {"causal": True}),
    "hdim256": (1, 40, 60, 2, 2, 256, {}),
}


def _qkv(batch, sq, sk, hq, hk, d, dtype, device="cuda"):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=generator).to(dtype).to(device)
            for shape in ((batch, sq, hq, d), (batch, sk, hk, d), (batch, sk, hk, d))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", CASES.keys())
def test_forward_against_reference(case, dtype):
    batch, sq, sk, hq, hk, d, options = CASES[case]
    options = dict(options)
    alibi = torch.rand(hq) * 0.2 if options.pop("alibi", False) else None
    q, k, v = _qkv(batch, sq, sk, hq, hk, d, dtype)
    out = flash_attn_func(q, k, v, alibi_slopes=None if alibi is None else alibi.cuda(),
                          **options)
    assert out.is_cuda and out.dtype == dtype
    cpu = [t.cpu() for t in (q, k, v)]
    ref = dense_reference(*[t.double() for t in cpu], alibi_slopes=alibi, **options)
    # The naive algorithm in the input dtype on the GPU (fp32 accumulation in the matmuls).
    ref_lowp = dense_reference(q, k, v, alibi_slopes=alibi, explicit=True, **options)
    assert_close(out.cpu(), ref, ref_lowp.cpu(), 2.0)


def test_varlen_forward_with_empty_sequence():
    lens_q, lens_k = [17, 0, 64, 5], [30, 9, 64, 0]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32)
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(sum(lens_q), 4, 64, generator=generator).half()
    k = torch.randn(sum(lens_k), 2, 64, generator=generator).half()
    v = torch.randn(sum(lens_k), 2, 64, generator=generator).half()
    out = flash_attn_varlen_func(q.cuda(), k.cuda(), v.cuda(), cu_q.cuda(), cu_k.cuda(),
                                 max(lens_q), max(lens_k), causal=True)
    ref = varlen_reference(q.double(), k.double(), v.double(), cu_q, cu_k, causal=True)
    ref_lowp = varlen_reference(q.cuda(), k.cuda(), v.cuda(), cu_q, cu_k, causal=True,
                                explicit=True)
    assert_close(out.cpu(), ref, ref_lowp.cpu(), 2.0)


def test_runs_on_the_current_non_default_stream():
    q, k, v = _qkv(2, 256, 256, 4, 4, 64, torch.float16)
    expected = flash_attn_func(q, k, v, causal=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        q2 = q * 1.0  # produced on `stream`: a launch on another stream would race with it
        out = flash_attn_func(q2, k, v, causal=True)
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(out, expected)


def test_cuda_graph_capture_and_replay():
    q, k, v = _qkv(2, 128, 128, 4, 2, 64, torch.bfloat16)
    static = [t.clone() for t in (q, k, v)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture, as PyTorch recommends
        flash_attn_func(*static, causal=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = flash_attn_func(*static, causal=True)
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        for t in static:
            t.copy_(torch.randn(t.shape, generator=generator).to(t.dtype))
        graph.replay()
        torch.testing.assert_close(static_out, flash_attn_func(*static, causal=True),
                                   rtol=0, atol=0)


def test_dropout_mask_equals_the_cpu_backend(monkeypatch):
    # Each device draws its pair from its own generator: hand both the same one.
    pair = torch.tensor([1234567, 89], dtype=torch.int64)
    monkeypatch.setattr(flash_attn_interface, "_rng_state", lambda p, device: pair.to(device))
    q, k, v = _qkv(2, 48, 72, 4, 2, 64, torch.float16)
    _, _, mask_gpu = flash_attn_func(q, k, v, dropout_p=0.2, return_attn_probs=True)
    _, _, mask_cpu = flash_attn_func(*[t.cpu() for t in (q, k, v)], dropout_p=0.2,
                                     return_attn_probs=True)
    assert torch.equal(mask_gpu.cpu() >= 0, mask_cpu >= 0)


def test_dropout_in_a_cuda_graph_draws_a_fresh_mask_per_replay():
    """The Philox pair is drawn on the device by an RNG kernel the graph captures and read by
    the kernels when they run: every replay drops a new pattern, and the backward of each
    replay drops exactly what its forward did (gradients against the reference through the
    replay's returned mask)."""
    p, dtype = 0.3, torch.float16
    static = _leaves(_qkv(1, 96, 96, 2, 2, 64, dtype))
    static_dout = _dout(static[0].shape, dtype).cuda()

    def step():
        out, _, s_dmask = flash_attn_func(*static, dropout_p=p, return_attn_probs=True)
        return [out, s_dmask] + list(torch.autograd.grad(out, static, static_dout))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture, as PyTorch recommends
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    masks = []
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        out, s_dmask, *grads = (t.clone() for t in captured)
        keep = (s_dmask >= 0).cpu()
        masks.append(keep)
        ref64 = [t.detach().cpu().double().requires_grad_() for t in static]
        ref = dense_reference(*ref64, dropout_p=p, keep=keep)
        lowp = _leaves(static)
        ref_lowp = dense_reference(*lowp, dropout_p=p, keep=keep.cuda())
        assert_close(out.cpu(), ref.detach(), ref_lowp.detach().cpu(), 2.0)
        _assert_grads_close(grads, ref, ref64, ref_lowp, lowp, static_dout.cpu())
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])


def _leaves(tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def _dout(shape, dtype, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _assert_grads_close(grads, out_ref, leaves_ref, out_lowp, leaves_lowp, dout):
    """grads of ours against the fp64 reference's, with the input-dtype reference's error."""
    grads_ref = torch.autograd.grad(out_ref, leaves_ref, dout.double().to(out_ref.device))
    grads_lowp = torch.autograd.grad(out_lowp, leaves_lowp, dout.to(out_lowp.device))
    for name, grad, grad_ref, grad_lowp in zip("qkv", grads, grads_ref, grads_lowp):
        assert grad.is_cuda
        assert_close(grad.cpu(), grad_ref.cpu(), grad_lowp.cpu(), 3.0, name=f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", CASES.keys())
def test_gradients_against_reference(case, dtype):
    batch, sq, sk, hq, hk, d, options = CASES[case]
    options = dict(options)
    alibi = torch.rand(hq, generator=torch.Generator().manual_seed(2)) * 0.2 \
        if options.pop("alibi", False) else None
    q, k, v = _leaves(_qkv(batch, sq, sk, hq, hk, d, dtype))
    out = flash_attn_func(q, k, v, alibi_slopes=None if alibi is None else alibi.cuda(),
                          **options)
    dout = _dout(out.shape, dtype)
    grads = torch.autograd.grad(out, [q, k, v], dout.cuda())
    ref64 = [t.detach().cpu().double().requires_grad_() for t in (q, k, v)]
    ref = dense_reference(*ref64, alibi_slopes=alibi, **options)
    lowp = _leaves((q, k, v))
    ref_lowp = dense_reference(*lowp, alibi_slopes=alibi, explicit=True, **options)
    _assert_grads_close(grads, ref, ref64, ref_lowp, lowp, dout)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_varlen_gradients_with_empty_sequences(dtype):
    lens_q, lens_k = [17, 0, 64, 5, 33], [30, 9, 64, 0, 20]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32)
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(sum(lens_q), 4, 64, generator=generator).to(dtype)
    k = torch.randn(sum(lens_k), 2, 64, generator=generator).to(dtype)
    v = torch.randn(sum(lens_k), 2, 64, generator=generator).to(dtype)
    q, k, v = _leaves((t.cuda() for t in (q, k, v)))
    out = flash_attn_varlen_func(q, k, v, cu_q.cuda(), cu_k.cuda(), max(lens_q), max(lens_k),
                                 causal=True, window_size=(24, -1))
    dout = _dout(out.shape, dtype)
    grads = torch.autograd.grad(out, [q, k, v], dout.cuda())
    options = {"causal": True, "window_size": (24, -1)}
    ref64 = [t.detach().cpu().double().requires_grad_() for t in (q, k, v)]
    ref = varlen_reference(*ref64, cu_q, cu_k, **options)
    lowp = _leaves((q, k, v))
    ref_lowp = varlen_reference(*lowp, cu_q, cu_k, explicit=True, **options)
    _assert_grads_close(grads, ref, ref64, ref_lowp, lowp, dout)


@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
def test_dropout_gradients_through_the_returned_mask(varlen):
    p, dtype = 0.25, torch.bfloat16
    q, k, v = _leaves(_qkv(2, 72, 96, 4, 2, 64, dtype))
    options = {"causal": True, "softcap": 5.0}
    torch.manual_seed(7)
    if varlen:
        cu = [torch.tensor(lens, dtype=torch.int32, device="cuda")
              for lens in ([0, 72, 144], [0, 96, 192])]
        out, _, s_dmask = flash_attn_varlen_func(
            *(t.flatten(0, 1) for t in (q, k, v)), *cu, 72, 96, dropout_p=p,
            return_attn_probs=True, **options)
        out = out.unflatten(0, (2, 72))
    else:
        out, _, s_dmask = flash_attn_func(q, k, v, dropout_p=p, return_attn_probs=True,
                                          **options)
    keep = (s_dmask >= 0).cpu()
    dout = _dout(out.shape, dtype)
    grads = torch.autograd.grad(out, [q, k, v], dout.cuda())
    ref64 = [t.detach().cpu().double().requires_grad_() for t in (q, k, v)]
    ref = dense_reference(*ref64, dropout_p=p, keep=keep, **options)
    lowp = _leaves((q, k, v))
    ref_lowp = dense_reference(*lowp, dropout_p=p, keep=keep.cuda(), **options)
    _assert_grads_close(grads, ref, ref64, ref_lowp, lowp, dout)


def _train_step(q, k, v, dout, deterministic=False, **options):
    out = flash_attn_func(q, k, v, deterministic=deterministic, **options)
    return [out] + list(torch.autograd.grad(out, [q, k, v], dout))


@pytest.mark.parametrize("case", ["gqa-causal", "softcap-alibi-window"])
def test_deterministic_gradients_are_bitwise_identical(case):
    # Long enough that many key blocks add into each dq row (the atomics of the default path).
    q, k, v = _leaves(_qkv(2, 1024, 1024, 8, 2, 64, torch.bfloat16))
    options = {"causal": True} if case == "gqa-causal" else \
        {"softcap": 10.0, "alibi_slopes": torch.full((8,), 0.05, device="cuda"),
         "window_size": (300, 40)}
    dout = _dout(q.shape, torch.bfloat16).cuda()
    first = _train_step(q, k, v, dout, deterministic=True, **options)
    for _ in range(4):
        again = _train_step(q, k, v, dout, deterministic=True, **options)
        for name, a, b in zip(("out", "dq", "dk", "dv"), first, again):
            assert torch.equal(a, b), f"{name} differs between deterministic runs"
    # The default path may reorder additions, never change the result beyond rounding.
    default = _train_step(q, k, v, dout, **options)
    for a, b in zip(first[1:], default[1:]):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_cuda_graph_capture_and_replay_of_forward_and_backward():
    static = _leaves(_qkv(2, 256, 256, 4, 2, 64, torch.float16))
    static_dout = _dout(static[0].shape, torch.float16).cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture, as PyTorch recommends
        for _ in range(2):
            _train_step(*static, static_dout, deterministic=True, causal=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _train_step(*static, static_dout, deterministic=True, causal=True)
    for seed in range(3):
        generator = torch.Generator().manual_seed(10 + seed)
        with torch.no_grad():
            for t in static + [static_dout]:
                t.copy_(torch.randn(t.shape, generator=generator).to(t.dtype))
        graph.replay()
        eager = _train_step(*static, static_dout, deterministic=True, causal=True)
        for name, a, b in zip(("out", "dq", "dk", "dv"), captured, eager):
            assert torch.equal(a, b), f"{name}: replay differs from eager (seed {seed})"


def test_backward_runs_on_the_current_non_default_stream():
    q, k, v = _leaves(_qkv(2, 512, 512, 4, 4, 64, torch.bfloat16))
    dout = _dout(q.shape, torch.bfloat16).cuda()
    expected = _train_step(q, k, v, dout, deterministic=True, causal=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        # Produced on `stream`: a launch on another stream would race with these.
        q2, k2, v2 = _leaves((q * 1.0, k * 1.0, v * 1.0))
        dout2 = dout * 1.0
        results = _train_step(q2, k2, v2, dout2, deterministic=True, causal=True)
    torch.cuda.current_stream().wait_stream(stream)
    for name, a, b in zip(("out", "dq", "dk", "dv"), results, expected):
        assert torch.equal(a, b), f"{name} differs on the non-default stream"


def test_fp64_and_mixed_devices_rejected():
    q, k, v = _qkv(1, 8, 8, 2, 2, 64, torch.float64)
    with pytest.raises(TypeError, match="q: dtype torch.float64 is not supported"):
        flash_attn_func(q, k, v)
    q, k, v = _qkv(1, 8, 8, 2, 2, 64, torch.float16)
    with pytest.raises(ValueError, match="v: device cpu does not match q device cuda"):
        flash_attn_func(q, k, v.cpu())


def test_compile_fullgraph_inference():
    q, k, v = _qkv(2, 64, 64, 4, 2, 64, torch.float16)

    def fn(q, k, v):
        return flash_attn_func(q * 2, k, v, causal=True).float().sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), fn(q, k, v))


def test_packed_strided_inputs_match_contiguous():
    generator = torch.Generator().manual_seed(4)
    qkv = torch.randn(2, 77, 3, 4, 64, generator=generator).half().cuda()
    packed = flashattn.flash_attn_qkvpacked_func(qkv, causal=True)
    unpacked = flash_attn_func(*[t.contiguous() for t in qkv.unbind(2)], causal=True)
    assert torch.equal(packed, unpacked)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="needs PyTorch >= 2.4")
@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
def test_opcheck_fwd_cuda(varlen):
    q, k, v = _qkv(2, 40, 56, 4, 2, 64, torch.bfloat16)
    seqlens = (None, None, 0, 0)
    if varlen:
        q, k, v = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)
        seqlens = (torch.tensor([0, 30, 80], dtype=torch.int32, device="cuda"),
                   torch.tensor([0, 56, 112], dtype=torch.int32, device="cuda"), 50, 56)
    args = (q, k, v, *seqlens, 0.0, 0.125, True, -1, -1, 0.0, None, False, False,
            torch.zeros(2, dtype=torch.int64))
    torch.library.opcheck(torch.ops.flashattn.fwd.default, args)
