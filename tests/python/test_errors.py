"""Bad input raises ValueError or TypeError whose message names the argument; one row a case."""

import ctypes

import pytest
import torch

import flashattn
from flashattn import _capi, flash_attn_func, flash_attn_qkvpacked_func, flash_attn_varlen_func


def _qkv(dtype=torch.float16, batch=1, sq=4, sk=4, hq=2, hk=2, d=8):
    return (torch.randn(batch, sq, hq, d).to(dtype), torch.randn(batch, sk, hk, d).to(dtype),
            torch.randn(batch, sk, hk, d).to(dtype))


def _varlen(dtype=torch.float16):
    return (torch.randn(6, 2, 8).to(dtype), torch.randn(6, 2, 8).to(dtype),
            torch.randn(6, 2, 8).to(dtype), torch.tensor([0, 2, 6], dtype=torch.int32))


def _dense(**changes):
    q, k, v = _qkv()
    args = {"q": q, "k": k, "v": v, **changes}
    return lambda: flash_attn_func(**args)


def _varlen_call(**changes):
    q, k, v, cu = _varlen()
    args = {"q": q, "k": k, "v": v, "cu_seqlens_q": cu, "cu_seqlens_k": cu, "max_seqlen_q": 4,
            "max_seqlen_k": 4, **changes}
    return lambda: flash_attn_varlen_func(**args)


# name: (call, exception, pattern that the message must contain)
CASES = {
    "q-3-dims": (_dense(q=torch.randn(4, 2, 8).half()), ValueError, r"q: expected 4 dims"),
    "k-not-tensor": (_dense(k=[1.0]), TypeError, r"k: expected a torch.Tensor"),
    "v-mixed-dtype": (_dense(v=torch.randn(1, 4, 2, 8).bfloat16()), TypeError,
                      r"v: dtype torch.bfloat16 does not match q dtype torch.float16"),
    "fp64": (lambda: flash_attn_func(*_qkv(torch.float64)), TypeError,
             r"q: dtype torch.float64 is not supported"),
    "int-dtype": (lambda: flash_attn_func(*[t.to(torch.int32) for t in _qkv()]), TypeError,
                  r"q: dtype torch.int32"),
    "mixed-device": (_dense(k=torch.randn(1, 4, 2, 8, device="meta").half()), ValueError,
                     r"k: device meta does not match q device cpu"),
    "head-dim-mismatch": (_dense(k=torch.randn(1, 4, 2, 16).half()), ValueError,
                          r"k: head_dim 16 does not match q head_dim 8"),
    "v-seqlen-mismatch": (_dense(v=torch.randn(1, 5, 2, 8).half()), ValueError,
                          r"v: shape \[1, 5, 2, 8\] does not match k shape"),
    "batch-mismatch": (_dense(k=torch.randn(2, 4, 2, 8).half(), v=torch.randn(2, 4, 2, 8).half()),
                       ValueError, r"k: batch 2 does not match q batch 1"),
    "head-dim-over-256": (lambda: flash_attn_func(*_qkv(d=264)), ValueError, r"head_dim"),
    "heads-not-divisible": (lambda: flash_attn_func(*_qkv(hq=3, hk=2)), ValueError,
                            r"k: heads 2 does not divide q heads 3"),
    "dropout-p-one": (_dense(dropout_p=1.0), ValueError, r"dropout_p"),
    "negative-softcap": (_dense(softcap=-1.0), ValueError, r"softcap"),
    "bad-window": (_dense(window_size=(-2, 0)), ValueError, r"window"),
    "window-not-pair": (_dense(window_size=(1,)), ValueError, r"window_size"),
    "alibi-dtype": (_dense(alibi_slopes=torch.ones(2, dtype=torch.float16)), TypeError,
                    r"alibi_slopes: expected dtype torch.float32"),
    "alibi-shape": (_dense(alibi_slopes=torch.ones(3)), ValueError,
                    r"alibi_slopes: expected shape \[2\] or \[1, 2\]"),
    "qkv-shape": (lambda: flash_attn_qkvpacked_func(torch.randn(1, 4, 2, 2, 8).half()),
                  ValueError, r"qkv: expected shape"),
    "varlen-q-4-dims": (_varlen_call(q=torch.randn(1, 6, 2, 8).half()), ValueError,
                        r"q: expected 3 dims"),
    "cu-seqlens-dtype": (_varlen_call(cu_seqlens_k=torch.tensor([0, 2, 6])), TypeError,
                         r"cu_seqlens_k: expected dtype torch.int32"),
    "cu-seqlens-length": (_varlen_call(cu_seqlens_k=torch.tensor([0, 6], dtype=torch.int32)),
                          ValueError, r"cu_seqlens_k: length 2 does not match"),
    "cu-seqlens-beyond-total": (
        _varlen_call(cu_seqlens_q=torch.tensor([0, 2, 9], dtype=torch.int32)), ValueError,
        r"cu_seqlens_q"),
    "cu-seqlens-decreasing": (
        _varlen_call(cu_seqlens_k=torch.tensor([0, 4, 3], dtype=torch.int32)), ValueError,
        r"cu_seqlens_k"),
    "max-seqlen-too-small": (_varlen_call(max_seqlen_q=1), ValueError, r"seqlen"),
    "block-table": (_varlen_call(block_table=torch.zeros(1, 1, dtype=torch.int32)),
                    NotImplementedError, r"block_table"),
}


@pytest.mark.parametrize("case", CASES.keys())
def test_bad_input_raises_naming_the_argument(case):
    call, exception, pattern = CASES[case]
    with pytest.raises(exception, match=pattern):
        call()


def test_cuda_tensors_without_cuda_build_raise():
    if flashattn.cuda_available() or not torch.cuda.is_available():
        pytest.skip("needs a CUDA device and a CPU-only flashattn build")
    with pytest.raises(NotImplementedError, match="cuda"):
        flash_attn_func(*[t.cuda() for t in _qkv()])


def test_c_abi_rejects_non_contiguous_last_dim_and_keeps_out_untouched():
    q, k, v = _qkv(torch.float32)
    out = torch.full_like(q, float("nan"))
    lse = torch.empty(1, 2, 4)
    strided = torch.randn(1, 4, 2, 16)[..., ::2]  # the library itself never copies
    with pytest.raises(ValueError, match=r"q: last-dimension stride must be 1, got 2"):
        _capi.forward(strided, k, v, out, lse, None)
    assert torch.isnan(out).all()


def test_c_abi_messages_and_struct_layout():
    assert _capi.lib.flashattn_abi_version() == _capi.ABI_VERSION
    assert _capi.lib.flashattn_struct_size(2) == ctypes.sizeof(_capi.AttentionArgs)
    assert _capi.lib.flashattn_struct_size(99) == 0
    assert _capi.lib.flashattn_forward(None) == _capi.STATUS_INVALID_ARGUMENT
    assert b"null" in _capi.lib.flashattn_last_error()
    assert _capi.lib.flashattn_status_name(2) == b"unsupported"
    assert flashattn.__version__.count(".") == 2
