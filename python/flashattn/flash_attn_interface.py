"""flash_attn 2.x functions (same names, arguments, defaults and results) over flashattn's ops."""

import math

import torch

from . import _ops

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _require_tensor(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")


def _maybe_contiguous(t):
    # As flash_attn: a non-contiguous last dimension is copied, any other strides are used.
    return t.contiguous() if t is not None and t.stride(-1) != 1 else t


def _check_rank(name, t, rank, layout):
    _require_tensor(name, t)
    if t.dim() != rank:
        raise ValueError(f"{name}: expected {rank} dims {layout}, got {t.dim()} "
                         f"(shape {list(t.shape)})")


def _check_matches_q(name, t, q):
    if t.device != q.device:
        raise ValueError(f"{name}: device {t.device} does not match q device {q.device}")
    if t.dtype != q.dtype:
        raise TypeError(f"{name}: dtype {t.dtype} does not match q dtype {q.dtype}")


def _check_qkv(q, k, v, varlen):
    """Checks what the library cannot see through pointers and sizes: types, ranks, devices,
    dtypes and the sizes that k and v must share with q. Written out rather than looped over
    (name, tensor) pairs, and each shape read once: it runs at every call."""
    rank, layout = (3, "[total_tokens, heads, head_dim]") if varlen else \
        (4, "[batch, seqlen, heads, head_dim]")
    _check_rank("q", q, rank, layout)
    _check_rank("k", k, rank, layout)
    _check_rank("v", v, rank, layout)
    if not q.is_cuda and q.device.type != "cpu":
        raise ValueError(f"q: device {q.device} is not supported, expected cpu or cuda")
    if q.dtype not in _DTYPES:
        raise TypeError(f"q: dtype {q.dtype} is not supported, expected torch.float16 or "
                        f"torch.bfloat16 (or torch.float32 on the cpu)")
    _check_matches_q("k", k, q)
    _check_matches_q("v", v, q)
    q_shape, k_shape, v_shape = q.shape, k.shape, v.shape
    if k_shape[-1] != q_shape[-1]:
        raise ValueError(f"k: head_dim {k_shape[-1]} does not match q head_dim {q_shape[-1]}")
    if v_shape[:-1] != k_shape[:-1]:
        raise ValueError(f"v: shape {list(v_shape)} does not match k shape {list(k_shape)} "
                         f"except in the last dimension")
    if not varlen and k_shape[0] != q_shape[0]:
        raise ValueError(f"k: batch {k_shape[0]} does not match q batch {q_shape[0]}")


def _check_cu_seqlens(q, cu_seqlens_q, cu_seqlens_k):
    for name, t in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        _require_tensor(name, t)
        if t.dtype != torch.int32:
            raise TypeError(f"{name}: expected dtype torch.int32, got {t.dtype}")
        if t.dim() != 1 or t.shape[0] < 1:
            raise ValueError(f"{name}: expected 1 dim [batch + 1], got shape {list(t.shape)}")
        if t.device != q.device:
            raise ValueError(f"{name}: device {t.device} does not match q device {q.device}")
    if cu_seqlens_k.shape[0] != cu_seqlens_q.shape[0]:
        raise ValueError(f"cu_seqlens_k: length {cu_seqlens_k.shape[0]} does not match "
                         f"cu_seqlens_q length {cu_seqlens_q.shape[0]}")
    return cu_seqlens_q.contiguous(), cu_seqlens_k.contiguous()


def _check_alibi(q, alibi_slopes, batch):
    if alibi_slopes is None:
        return None
    _require_tensor("alibi_slopes", alibi_slopes)
    if alibi_slopes.dtype != torch.float32:
        raise TypeError(f"alibi_slopes: expected dtype torch.float32, got {alibi_slopes.dtype}")
    if alibi_slopes.device != q.device:
        raise ValueError(f"alibi_slopes: device {alibi_slopes.device} does not match q device "
                         f"{q.device}")
    heads = q.shape[-2]
    if list(alibi_slopes.shape) not in ([heads], [batch, heads]):
        raise ValueError(f"alibi_slopes: expected shape [{heads}] or [{batch}, {heads}], "
                         f"got {list(alibi_slopes.shape)}")
    return _maybe_contiguous(alibi_slopes)


def _check_window(window_size):
    if len(window_size) != 2:
        raise ValueError(f"window_size: expected (left, right), got {window_size!r}")
    return int(window_size[0]), int(window_size[1])


def _rng_state(dropout_p, device):
    """Philox (seed, offset) for one call, drawn from PyTorch's generator of the inputs' device so
    that torch.manual_seed makes runs repeatable; the backward receives the same pair. On CUDA
    the pair stays on the device and the kernels read it when they run: drawn by an RNG kernel
    that a CUDA graph captures, it is fresh at every replay (a host pair would be frozen into
    the graph at capture)."""
    if dropout_p > 0.0:
        return torch.randint(0, 2**62, (2,), dtype=torch.int64, device=device)
    return torch.zeros(2, dtype=torch.int64)


# Without dropout the kernels never read the pair: eager calls share this one instead of
# allocating their own. Nothing writes it (the ops take rng_state as a read-only input, the
# backward only reads what the forward saved); traced calls still make theirs, in the graph.
_NO_DROPOUT_RNG_STATE = torch.zeros(2, dtype=torch.int64, device="cpu")


def _rng_state_for(dropout_p, q):
    if dropout_p == 0.0 and _ops.runs_directly(q):
        return _NO_DROPOUT_RNG_STATE
    return _rng_state(dropout_p, q.device)


def _attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
               softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
               return_attn_probs):
    varlen = cu_seqlens_q is not None
    _check_qkv(q, k, v, varlen)
    if varlen:
        cu_seqlens_q, cu_seqlens_k = _check_cu_seqlens(q, cu_seqlens_q, cu_seqlens_k)
        batch = cu_seqlens_q.shape[0] - 1
    else:
        batch, max_seqlen_q, max_seqlen_k = q.shape[0], q.shape[1], k.shape[1]
    alibi_slopes = _check_alibi(q, alibi_slopes, batch)
    window_left, window_right = _check_window(window_size)
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** (-0.5)
    q, k, v = _maybe_contiguous(q), _maybe_contiguous(k), _maybe_contiguous(v)
    dropout_p = float(dropout_p)
    if not 0.0 <= dropout_p < 1.0 or math.isnan(dropout_p):
        raise ValueError(f"dropout_p: expected a value in [0, 1), got {dropout_p}")
    out, softmax_lse, s_dmask = _ops.attention(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
        float(softmax_scale), bool(causal), window_left, window_right, float(softcap),
        alibi_slopes, bool(deterministic), bool(return_attn_probs),
        _rng_state_for(dropout_p, q))
    return (out, softmax_lse, s_dmask) if return_attn_probs else out


def _check_block_table(block_table):
    if block_table is not None:
        raise NotImplementedError("block_table: paged KV is not supported by "
                                  "flash_attn_varlen_func here; pass block_table=None")


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
                    window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                    return_attn_probs=False):
    """Exact attention of q [batch, seqlen_q, heads, head_dim] over k, v
    [batch, seqlen_k, heads_k, head_dim(_v)], heads divisible by heads_k (MQA/GQA).

    causal and window_size=(left, right) are aligned to the bottom-right corner of the score
    matrix (-1: unbounded); softcap > 0 caps scores as softcap * tanh(score / softcap);
    alibi_slopes (fp32, [heads] or [batch, heads]) add -slope * |i + seqlen_k - seqlen_q - j|.
    Returns out [batch, seqlen_q, heads, head_dim_v], or with return_attn_probs=True
    (out, softmax_lse [batch, heads, seqlen_q] fp32, S_dmask) where S_dmask
    [batch, heads, seqlen_q, seqlen_k] holds the softmax probabilities negated where dropout
    dropped them (an empty tensor when dropout_p == 0).
    """
    return _attention(q, k, v, None, None, 0, 0, dropout_p, softmax_scale, causal, window_size,
                      softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False,
                              window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                              deterministic=False, return_attn_probs=False):
    """flash_attn_func with qkv [batch, seqlen, 3, heads, head_dim]."""
    _require_tensor("qkv", qkv)
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv: expected shape [batch, seqlen, 3, heads, head_dim], got "
                         f"{list(qkv.shape)}")
    return _attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], None, None, 0, 0, dropout_p,
                      softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                      return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False,
                             window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                             deterministic=False, return_attn_probs=False):
    """flash_attn_func with kv [batch, seqlen_k, 2, heads_k, head_dim]."""
    _require_tensor("kv", kv)
    if kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(f"kv: expected shape [batch, seqlen_k, 2, heads_k, head_dim], got "
                         f"{list(kv.shape)}")
    return _attention(q, kv[:, :, 0], kv[:, :, 1], None, None, 0, 0, dropout_p, softmax_scale,
                      causal, window_size, softcap, alibi_slopes, deterministic,
                      return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           dropout_p=0.0, softmax_scale=None, causal=False,
                           window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """Variable-length attention: q [total_q, heads, head_dim], k, v [total_k, heads_k, ...],
    sequence b being rows cu_seqlens[b]:cu_seqlens[b + 1] (int32 [batch + 1]).

    Returns out [total_q, heads, head_dim_v], or (out, softmax_lse [heads, total_q], S_dmask
    [batch, heads, max_seqlen_q, max_seqlen_k]) with return_attn_probs=True.
    """
    _check_block_table(block_table)
    return _attention(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k),
                      dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                      deterministic, return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0,
                                     softmax_scale=None, causal=False, window_size=(-1, -1),
                                     softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """flash_attn_varlen_func with qkv [total, 3, heads, head_dim]."""
    _require_tensor("qkv", qkv)
    if qkv.dim() != 4 or qkv.shape[1] != 3:
        raise ValueError(f"qkv: expected shape [total_tokens, 3, heads, head_dim], got "
                         f"{list(qkv.shape)}")
    return _attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, int(max_seqlen),
                      int(max_seqlen), dropout_p, softmax_scale, causal, window_size, softcap,
                      alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                    max_seqlen_k, dropout_p=0.0, softmax_scale=None,
                                    causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False,
                                    return_attn_probs=False):
    """flash_attn_varlen_func with kv [total_k, 2, heads_k, head_dim]."""
    _require_tensor("kv", kv)
    if kv.dim() != 4 or kv.shape[1] != 2:
        raise ValueError(f"kv: expected shape [total_k, 2, heads_k, head_dim], got "
                         f"{list(kv.shape)}")
    return _attention(q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q),
                      int(max_seqlen_k), dropout_p, softmax_scale, causal, window_size, softcap,
                      alibi_slopes, deterministic, return_attn_probs)
