"""Reference attention for the Python tests: PyTorch's SDPA (math) with an explicit mask and bias,
or the explicit formula where SDPA has no knob (softcap, a given dropout mask), and the
DESIGN.md criterion."""

import torch
import torch.nn.functional as F


def visible_mask(seqlen_q, seqlen_k, causal, window_size, device="cpu"):
    """[seqlen_q, seqlen_k] bool, bottom-right aligned: query i sees key j iff
    i + sk - sq - left <= j <= i + sk - sq + right (-1 unbounded, causal: right = 0)."""
    left, right = window_size
    if causal:
        right = 0
    rows = torch.arange(seqlen_q, device=device)[:, None] + (seqlen_k - seqlen_q)
    cols = torch.arange(seqlen_k, device=device)[None, :]
    visible = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if right >= 0:
        visible &= cols <= rows + right
    if left >= 0:
        visible &= cols >= rows - left
    return visible


def alibi_bias(slopes, seqlen_q, seqlen_k, dtype):
    """[heads, seqlen_q, seqlen_k] bias -slope * |i + sk - sq - j| for slopes [heads]."""
    rows = torch.arange(seqlen_q, device=slopes.device)[:, None] + (seqlen_k - seqlen_q)
    cols = torch.arange(seqlen_k, device=slopes.device)[None, :]
    return -slopes.to(dtype)[:, None, None] * (rows - cols).abs().to(dtype)[None]


def _scores_and_bias(q, k, causal, window_size, softcap, alibi_slopes, softmax_scale):
    """q [b, h, sq, d] and the expanded k [b, h, sk, d]: (visible, bias, scale)."""
    batch, heads, seqlen_q, head_dim = q.shape
    seqlen_k = k.shape[2]
    scale = head_dim ** -0.5 if softmax_scale is None else softmax_scale
    visible = visible_mask(seqlen_q, seqlen_k, causal, window_size, q.device)
    bias = torch.zeros(batch, heads, seqlen_q, seqlen_k, dtype=q.dtype, device=q.device)
    if alibi_slopes is not None:
        alibi_slopes = alibi_slopes.to(q.device)
        slopes = alibi_slopes if alibi_slopes.dim() == 2 else alibi_slopes.expand(batch, heads)
        bias = bias + torch.stack([alibi_bias(s, seqlen_q, seqlen_k, q.dtype) for s in slopes])
    return visible, bias, scale


def _explicit_probs(qt, kt, visible, bias, scale, softcap):
    scores = torch.matmul(qt, kt.transpose(-1, -2)) * scale
    if softcap > 0.0:
        scores = softcap * torch.tanh(scores / softcap)
    empty_rows = ~visible.any(dim=-1)
    scores = (scores + bias).masked_fill(~visible, float("-inf"))
    scores[..., empty_rows, 0] = 0.0
    probs = torch.softmax(scores, dim=-1)
    return probs.masked_fill(empty_rows[None, None, :, None], 0.0)


def dense_probs(q, k, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                softmax_scale=None):
    """Softmax probabilities [batch, hq, sq, sk] (0 where masked), in q's dtype."""
    qt = q.transpose(1, 2)
    kt = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2).transpose(1, 2)
    visible, bias, scale = _scores_and_bias(qt, kt, causal, window_size, softcap, alibi_slopes,
                                            softmax_scale)
    return _explicit_probs(qt, kt, visible, bias, scale, softcap)


def dense_reference(q, k, v, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                    softmax_scale=None, dropout_p=0.0, keep=None, explicit=False):
    """out [batch, sq, hq, dv] for q [batch, sq, hq, d], k/v [batch, sk, hk, d(v)], computed in
    q's dtype: SDPA (math) with an explicit bias, or the explicit formula for softcap and
    dropout. keep: bool [batch, hq, sq, sk], the dropout mask to apply (None: no dropout).
    Rows that see no key give 0. explicit=True always takes the explicit formula (every
    intermediate rounded to q's dtype, as a low-precision kernel would)."""
    heads, heads_k = q.shape[2], k.shape[2]
    qt = q.transpose(1, 2)
    kt = k.repeat_interleave(heads // heads_k, dim=2).transpose(1, 2)
    vt = v.repeat_interleave(heads // heads_k, dim=2).transpose(1, 2)
    visible, bias, scale = _scores_and_bias(qt, kt, causal, window_size, softcap, alibi_slopes,
                                            softmax_scale)
    empty_rows = ~visible.any(dim=-1)  # [sq]
    if softcap == 0.0 and keep is None and not explicit:
        bias = bias.masked_fill(~visible, float("-inf"))
        # Rows without keys would be NaN in SDPA; give them one finite (ignored) column.
        bias[..., empty_rows, 0] = 0.0
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=scale)
        out = out.masked_fill(empty_rows[None, None, :, None], 0.0)
    else:
        probs = _explicit_probs(qt, kt, visible, bias, scale, softcap)
        if keep is not None:
            probs = probs * keep.to(probs.dtype) / (1.0 - dropout_p)
        out = torch.matmul(probs, vt)
    return out.transpose(1, 2)


def varlen_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, keep=None, alibi_slopes=None,
                     **options):
    """dense_reference sequence by sequence over packed q [total_q, hq, d], k/v [total_k, ...]."""
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    outs = []
    for b in range(len(cq) - 1):
        sq, sk = cq[b + 1] - cq[b], ck[b + 1] - ck[b]
        qb = q[cq[b]:cq[b + 1]][None]
        kb, vb = k[ck[b]:ck[b + 1]][None], v[ck[b]:ck[b + 1]][None]
        if sq == 0:
            continue
        if sk == 0:
            outs.append(torch.zeros(sq, q.shape[1], v.shape[2], dtype=q.dtype, device=q.device))
            continue
        slopes = None
        if alibi_slopes is not None:
            slopes = alibi_slopes[b] if alibi_slopes.dim() == 2 else alibi_slopes
        kb_keep = None if keep is None else keep[b:b + 1, :, :sq, :sk]
        outs.append(dense_reference(qb, kb, vb, keep=kb_keep, alibi_slopes=slopes,
                                    **options)[0])
    if not outs:
        return torch.zeros(0, q.shape[1], v.shape[2], dtype=q.dtype, device=q.device)
    return torch.cat(outs)


def assert_close(actual, ref, ref_lowp, factor, name="out"):
    """DESIGN.md: max|actual - ref| <= factor * max|ref_lowp - ref| + 1e-5, never NaN."""
    actual, ref, ref_lowp = actual.double(), ref.double(), ref_lowp.double()
    assert not torch.isnan(actual).any(), f"{name}: NaN in the result"
    if actual.numel() == 0:
        return
    error = (actual - ref).abs().max().item()
    bound = factor * (ref_lowp - ref).abs().max().item() + 1e-5
    assert error <= bound, f"{name}: max error {error:.3g} exceeds {bound:.3g}"
