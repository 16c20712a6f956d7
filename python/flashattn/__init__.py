"""flashattn: exact, IO-aware attention (FlashAttention-2) on CPU and CUDA tensors.

The functions mirror flash_attn 2.x (names, arguments, defaults, results). The native part is
a C library loaded with ctypes, linked against no Python and no libtorch: one build works with
every PyTorch 2.x. With PyTorch >= 2.4 the kernels are the custom ops torch.ops.flashattn.fwd
and torch.ops.flashattn.bwd (fake kernels and autograd registered, torch.compile-friendly).
"""

from ._capi import FlashAttnCudaError, FlashAttnUnsupportedError, cuda_available
from ._capi import version as _library_version
from .flash_attn_interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)

__version__ = _library_version()

__all__ = [
    "FlashAttnCudaError",
    "FlashAttnUnsupportedError",
    "cuda_available",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
]
