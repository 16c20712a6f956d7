"""The forward and backward as torch operators: flashattn::fwd and flashattn::bwd.

With PyTorch >= 2.4 they are torch.library custom ops with fake (meta) kernels and an autograd
formula, so torch.compile(fullgraph=True) traces them and AOTAutograd sees the backward. With
older PyTorch 2.x the same kernels run eagerly under a torch.autograd.Function (torch.compile
then breaks the graph around them).

Both ops take every option as an argument, and the dropout seed and offset as an int64
tensor `rng_state` of two elements (on the inputs' device: on CUDA the kernels read it when they
run, which keeps CUDA graphs replaying fresh masks), so that the backward drops exactly what
the forward did.
"""

from typing import Optional, Tuple

import torch

from . import _capi

Tensor = torch.Tensor

HAS_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op") and \
    hasattr(torch.library, "register_autograd")


def _forward_shapes(q, v, cu_seqlens_q, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax):
    """Shapes of out, lse and S_dmask, shared by the real and the fake kernels."""
    out_shape = tuple(q.shape[:-1]) + (v.shape[-1],)
    if cu_seqlens_q is None:
        batch, seqlen_q, heads = q.shape[0], q.shape[1], q.shape[2]
        lse_shape = (batch, heads, seqlen_q)
        seqlen_k = max_seqlen_k
    else:
        batch, seqlen_q, heads = cu_seqlens_q.shape[0] - 1, max_seqlen_q, q.shape[1]
        lse_shape = (heads, q.shape[0])
        seqlen_k = max_seqlen_k
    mask_shape = (batch, heads, seqlen_q, seqlen_k) if return_softmax and dropout_p > 0 else (0,)
    return out_shape, lse_shape, mask_shape


def _visible(rows, cols, seqlen_q, seqlen_k, window_left, window_right, causal):
    """Bottom-right aligned visibility of [rows, cols] (the library's MaskSpec)."""
    aligned = rows[:, None] + (seqlen_k - seqlen_q)
    visible = cols[None, :] < seqlen_k
    right = 0 if causal else window_right
    if right >= 0:
        visible = visible & (cols[None, :] <= aligned + right)
    if window_left >= 0:
        visible = visible & (cols[None, :] >= aligned - window_left)
    return visible


def _probabilities(q, k, lse, seqlen_q, seqlen_k, softmax_scale, causal, window_left,
                   window_right, softcap, slopes):
    """Softmax probabilities [heads, seqlen_q, seqlen_k] of one sequence from its LSE."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), kf) * softmax_scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    rows = torch.arange(seqlen_q, device=q.device)
    cols = torch.arange(seqlen_k, device=q.device)
    if slopes is not None:
        distance = (rows[:, None] + (seqlen_k - seqlen_q) - cols[None, :]).abs().float()
        scores = scores - slopes.float()[:, None, None] * distance
    visible = _visible(rows, cols, seqlen_q, seqlen_k, window_left, window_right, causal)
    probs = torch.exp(scores - lse.float()[:, :, None])
    return torch.where(visible[None], probs, torch.zeros_like(probs))


def _attention_probs(q, k, lse, keep, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal,
                     window_left, window_right, softcap, alibi_slopes):
    """flash_attn's S_dmask: the probabilities, negated where dropout dropped the element."""
    probs = torch.zeros(keep.shape, dtype=torch.float32, device=q.device)
    if cu_seqlens_q is None:
        bounds = [(b, b * q.shape[1], q.shape[1], b * k.shape[1], k.shape[1])
                  for b in range(q.shape[0])]
        q, k = q.flatten(0, 1), k.flatten(0, 1)
        lse_rows = lse.permute(1, 0, 2).flatten(1)  # [heads, batch * seqlen_q]
    else:
        cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        bounds = [(b, cq[b], cq[b + 1] - cq[b], ck[b], ck[b + 1] - ck[b])
                  for b in range(len(cq) - 1)]
        lse_rows = lse
    for b, q0, sq, k0, sk in bounds:
        if sq == 0 or sk == 0:
            continue
        slopes = None
        if alibi_slopes is not None:
            slopes = alibi_slopes[b] if alibi_slopes.dim() == 2 else alibi_slopes
        probs[b, :, :sq, :sk] = _probabilities(
            q[q0:q0 + sq], k[k0:k0 + sk], lse_rows[:, q0:q0 + sq], sq, sk, softmax_scale, causal,
            window_left, window_right, softcap, slopes)
    return torch.where(keep.bool(), probs, -probs).to(q.dtype)


def fwd_impl(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
             cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
             dropout_p: float, softmax_scale: float, causal: bool, window_left: int,
             window_right: int, softcap: float, alibi_slopes: Optional[Tensor],
             deterministic: bool, return_softmax: bool,
             rng_state: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    del deterministic  # a backward option; the forward takes it only to hand it on
    if cu_seqlens_q is None:
        max_seqlen_q, max_seqlen_k = q.shape[1], k.shape[1]
    out_shape, lse_shape, mask_shape = _forward_shapes(
        q, v, cu_seqlens_q, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax)
    out = q.new_empty(out_shape)
    lse = q.new_empty(lse_shape, dtype=torch.float32)
    keep = None
    if len(mask_shape) == 4:
        keep = torch.zeros(mask_shape, dtype=torch.uint8, device=q.device)
    _capi.forward(q, k, v, out, lse, keep, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                  max_seqlen_k, dropout_p, softmax_scale, causal, window_left, window_right,
                  softcap, alibi_slopes, rng_state)
    if keep is None:
        return out, lse, q.new_empty(mask_shape)
    s_dmask = _attention_probs(q, k, lse, keep, cu_seqlens_q, cu_seqlens_k, softmax_scale,
                               causal, window_left, window_right, softcap, alibi_slopes)
    return out, lse, s_dmask


def fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
             softmax_scale, causal, window_left, window_right, softcap, alibi_slopes,
             deterministic, return_softmax, rng_state):
    if cu_seqlens_q is None:
        max_seqlen_q, max_seqlen_k = q.shape[1], k.shape[1]
    out_shape, lse_shape, mask_shape = _forward_shapes(
        q, v, cu_seqlens_q, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax)
    return (q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32),
            q.new_empty(mask_shape))


def bwd_impl(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
             cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor], max_seqlen_q: int,
             max_seqlen_k: int, dropout_p: float, softmax_scale: float, causal: bool,
             window_left: int, window_right: int, softcap: float,
             alibi_slopes: Optional[Tensor], deterministic: bool,
             rng_state: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    if cu_seqlens_q is None:
        max_seqlen_q, max_seqlen_k = q.shape[1], k.shape[1]
    dq = q.new_empty(q.shape)
    dk = k.new_empty(k.shape)
    dv = v.new_empty(v.shape)
    _capi.backward(dout, q, k, v, out, lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                   max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_left,
                   window_right, softcap, alibi_slopes, deterministic, rng_state)
    return dq, dk, dv


def bwd_fake(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
             dropout_p, softmax_scale, causal, window_left, window_right, softcap, alibi_slopes,
             deterministic, rng_state):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _contiguous_last(t):
    return t.contiguous() if t.stride(-1) != 1 else t


# Positions of the forward's arguments; the autograd formula returns one gradient per argument.
_FWD_ARGS = ("q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k",
             "dropout_p", "softmax_scale", "causal", "window_left", "window_right", "softcap",
             "alibi_slopes", "deterministic", "return_softmax", "rng_state")


def _setup_context(ctx, inputs, output):
    (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
     causal, window_left, window_right, softcap, alibi_slopes, deterministic, _,
     rng_state) = inputs
    out, lse, _ = output
    ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, alibi_slopes,
                          rng_state)
    ctx.options = (max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_left,
                   window_right, softcap, deterministic)


_NO_GRADIENTS = (None,) * (len(_FWD_ARGS) - 3)  # the arguments after q, k and v


def _backward(ctx, dout, backward_op):
    q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, alibi_slopes, rng_state = ctx.saved_tensors
    (max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_left, window_right,
     softcap, deterministic) = ctx.options
    if dout is None:  # not materialised (_FlashAttnFunction.forward): the zeros autograd passes
        dout = torch.zeros_like(out)
    dq, dk, dv = backward_op(_contiguous_last(dout), q, k, v, out, lse, cu_seqlens_q,
                             cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
                             causal, window_left, window_right, softcap, alibi_slopes,
                             deterministic, rng_state)
    return (dq, dk, dv) + _NO_GRADIENTS


def _backward_formula(ctx, dout, *unused_grads):
    return _backward(ctx, dout, bwd)


class _FlashAttnFunction(torch.autograd.Function):
    """The eager path: the same kernels and formula without the custom-op dispatch, whose
    Python overhead (tens of microseconds a call) is felt in small problems and decoding."""

    @staticmethod
    def forward(ctx, *inputs):
        output = fwd_impl(*inputs)
        _setup_context(ctx, inputs, output)
        ctx.mark_non_differentiable(output[1], output[2])
        # No zero tensors made for the gradients of lse and S_dmask, which the backward ignores
        # (and, should out's be missing, _backward makes the one it needs).
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    def backward(ctx, dout, *unused_grads):
        # The kernels directly, as in the forward, unless the backward is itself recorded
        # (create_graph=True: flashattn::bwd then raises that it has no derivative when used)
        # or traced (compiled autograd).
        if not torch.is_grad_enabled() and runs_directly(dout):
            return _backward(ctx, dout, bwd_impl)
        return _backward(ctx, dout, bwd)


if HAS_CUSTOM_OP:
    fwd = torch.library.custom_op("flashattn::fwd", fwd_impl, mutates_args=())
    fwd.register_fake(fwd_fake)
    bwd = torch.library.custom_op("flashattn::bwd", bwd_impl, mutates_args=())
    bwd.register_fake(bwd_fake)
    fwd.register_autograd(_backward_formula, setup_context=_setup_context)
else:
    bwd = bwd_impl

    def fwd(*inputs):
        return _FlashAttnFunction.apply(*inputs)


def _never_compiling():
    return False


# Looked up once: torch.compile recognises the function itself, and the lookups cost per call.
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", _never_compiling)


def runs_directly(t):
    """Whether the kernels run without the custom ops: always without them (PyTorch < 2.4),
    else for plain tensors in eager mode; tracing (torch.compile, fake or meta tensors, tensor
    subclasses) needs the ops."""
    return not HAS_CUSTOM_OP or (type(t) is torch.Tensor and not _is_compiling())


# What makes torch.autograd.Function.apply more than a call of the forward, besides gradients:
# functorch transforms and forward-mode AD (it raises: no setup_context, no jvp), torch.jit.trace
# (it records the call) and the profiler (it records an event named after the Function).
_forward_ad = torch.autograd.forward_ad
_AUTOGRAD_HOOKS = (getattr(torch._C, "_are_functorch_transforms_active", None),
                   getattr(torch._C, "_get_tracing_state", None),
                   getattr(getattr(torch._C, "_autograd", None), "_profiler_enabled", None))
_CAN_SKIP_AUTOGRAD = hasattr(_forward_ad, "_current_level") and None not in _AUTOGRAD_HOOKS
_ALIBI_SLOPES = _FWD_ARGS.index("alibi_slopes")


def _needs_autograd_function(inputs):
    """Whether the eager forward must go through _FlashAttnFunction.apply, rather than call
    fwd_impl, whose result is then the same: skipping apply saves about 10 us a call where no
    gradient is wanted (torch.no_grad, inference)."""
    if not _CAN_SKIP_AUTOGRAD:
        return True
    if torch.is_grad_enabled():
        q, k, v, alibi_slopes = inputs[0], inputs[1], inputs[2], inputs[_ALIBI_SLOPES]
        if q.requires_grad or k.requires_grad or v.requires_grad or (
                alibi_slopes is not None and alibi_slopes.requires_grad):
            return True
    functorch_active, jit_tracing_state, profiler_enabled = _AUTOGRAD_HOOKS
    return (_forward_ad._current_level >= 0 or functorch_active()
            or jit_tracing_state() is not None or profiler_enabled())


def attention(*inputs):
    """flashattn::fwd with autograd: the custom op when tracing, the direct path for plain
    tensors in eager mode (runs_directly), through autograd only where it has work."""
    if not runs_directly(inputs[0]):
        return fwd(*inputs)
    if _needs_autograd_function(inputs):
        return _FlashAttnFunction.apply(*inputs)
    return fwd_impl(*inputs)
