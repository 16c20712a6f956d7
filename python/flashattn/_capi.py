"""ctypes binding of the C ABI (include/flashattn/c_api.h): torch tensors in, status checked."""

import ctypes
import math
import os

import torch

ABI_VERSION = 1

STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_UNSUPPORTED = 2
STATUS_CUDA_ERROR = 3
STATUS_OUT_OF_MEMORY = 4

DTYPES = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}
DEVICE_CPU = 0
DEVICE_CUDA = 1
BACKENDS = {"automatic": 0, "cpu_reference": 1, "cpu_tiled": 2, "cuda_sm80": 3, "cuda_sm90": 4}


class FlashAttnUnsupportedError(NotImplementedError):
    """Valid arguments that no backend of this build can run (e.g. the CUDA backward)."""


class FlashAttnCudaError(RuntimeError):
    """A CUDA runtime call or kernel launch failed inside the library."""


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("batch_stride", ctypes.c_int64),
        ("row_stride", ctypes.c_int64),
        ("head_stride", ctypes.c_int64),
        ("dim_stride", ctypes.c_int64),
    ]


class Lse(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("batch_stride", ctypes.c_int64),
        ("head_stride", ctypes.c_int64),
    ]


class AttentionArgs(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_int32),
        ("device_index", ctypes.c_int32),
        ("backend", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("batch", ctypes.c_int64),
        ("seqlen_q", ctypes.c_int64),
        ("seqlen_k", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("q", Tensor),
        ("k", Tensor),
        ("v", Tensor),
        ("cu_seqlens_q", ctypes.c_void_p),
        ("cu_seqlens_k", ctypes.c_void_p),
        ("seqused_k", ctypes.c_void_p),
        ("total_q", ctypes.c_int64),
        ("total_k", ctypes.c_int64),
        ("softmax_scale", ctypes.c_float),
        ("causal", ctypes.c_int32),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("alibi_slopes", ctypes.c_void_p),
        ("alibi_batch_stride", ctypes.c_int64),
        ("dropout_p", ctypes.c_float),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_offset", ctypes.c_uint64),
        ("dropout_seed_offset", ctypes.c_void_p),
        ("stream", ctypes.c_void_p),
        ("num_threads", ctypes.c_int32),
    ]


class ForwardArgs(ctypes.Structure):
    _fields_ = [
        ("args", AttentionArgs),
        ("out", Tensor),
        ("lse", Lse),
        ("dropout_mask", ctypes.c_void_p),
    ]


class BackwardArgs(ctypes.Structure):
    _fields_ = [
        ("args", AttentionArgs),
        ("out", Tensor),
        ("dout", Tensor),
        ("lse", Lse),
        ("dq", Tensor),
        ("dk", Tensor),
        ("dv", Tensor),
        ("deterministic", ctypes.c_int32),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_uint64),
    ]


_STRUCTS = [Tensor, Lse, AttentionArgs, ForwardArgs, BackwardArgs]  # FLASHATTN_STRUCT_* order


def _load():
    path = os.environ.get("FLASHATTN_C_LIBRARY") or os.path.join(os.path.dirname(__file__), "_C.so")
    lib = ctypes.CDLL(path)
    for name in ("flashattn_forward", "flashattn_validate_forward"):
        getattr(lib, name).argtypes = [ctypes.POINTER(ForwardArgs)]
        getattr(lib, name).restype = ctypes.c_int32
    for name in ("flashattn_backward", "flashattn_validate_backward"):
        getattr(lib, name).argtypes = [ctypes.POINTER(BackwardArgs)]
        getattr(lib, name).restype = ctypes.c_int32
    lib.flashattn_backward_workspace_size.argtypes = [
        ctypes.POINTER(BackwardArgs), ctypes.POINTER(ctypes.c_uint64)]
    lib.flashattn_backward_workspace_size.restype = ctypes.c_int32
    lib.flashattn_select_forward_backend.argtypes = [
        ctypes.POINTER(ForwardArgs), ctypes.POINTER(ctypes.c_int32)]
    lib.flashattn_select_forward_backend.restype = ctypes.c_int32
    lib.flashattn_attention_args_init.argtypes = [ctypes.POINTER(AttentionArgs)]
    lib.flashattn_attention_args_init.restype = None
    for name in ("flashattn_last_error", "flashattn_version"):
        getattr(lib, name).argtypes = []
        getattr(lib, name).restype = ctypes.c_char_p
    lib.flashattn_status_name.argtypes = [ctypes.c_int32]
    lib.flashattn_status_name.restype = ctypes.c_char_p
    lib.flashattn_backend_name.argtypes = [ctypes.c_int32]
    lib.flashattn_backend_name.restype = ctypes.c_char_p
    lib.flashattn_cuda_available.restype = ctypes.c_int32
    lib.flashattn_abi_version.restype = ctypes.c_int32
    lib.flashattn_struct_size.argtypes = [ctypes.c_int32]
    lib.flashattn_struct_size.restype = ctypes.c_size_t

    if lib.flashattn_abi_version() != ABI_VERSION:
        raise ImportError(f"flashattn: {path} has C ABI version {lib.flashattn_abi_version()}, "
                          f"this package expects {ABI_VERSION}; reinstall the package")
    for code, struct in enumerate(_STRUCTS):
        if lib.flashattn_struct_size(code) != ctypes.sizeof(struct):
            raise ImportError(f"flashattn: struct {struct.__name__} is "
                              f"{lib.flashattn_struct_size(code)} bytes in {path}, "
                              f"{ctypes.sizeof(struct)} in the binding")
    return lib


lib = _load()


def version():
    return lib.flashattn_version().decode()


def cuda_available():
    """Whether the installed library holds CUDA kernels and a GPU is present."""
    return bool(lib.flashattn_cuda_available())


def check(status):
    """Raises the Python exception for a non-OK status, with the library's message."""
    if status == STATUS_OK:
        return
    message = lib.flashattn_last_error().decode(errors="replace")
    if status == STATUS_INVALID_ARGUMENT:
        raise ValueError(message)
    if status == STATUS_UNSUPPORTED:
        raise FlashAttnUnsupportedError(message)
    if status == STATUS_CUDA_ERROR:
        raise FlashAttnCudaError(message)
    if status == STATUS_OUT_OF_MEMORY:
        raise MemoryError(message)
    raise RuntimeError(f"flashattn internal error: {message}")


def _tensor_ref(t, varlen):
    """A [batch, rows, heads, dim] (or varlen [rows, heads, dim]) tensor as a flashattn_tensor."""
    if t is None:
        return Tensor(None, 0, 0, 0, 1)
    s = t.stride()
    if varlen:
        return Tensor(t.data_ptr(), 0, s[0], s[1], s[2])
    return Tensor(t.data_ptr(), s[0], s[1], s[2], s[3])


def _ptr(t):
    return None if t is None else t.data_ptr()


def _fill_args(a, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
               softmax_scale, causal, window_left, window_right, softcap, alibi_slopes,
               rng_state, backend):
    lib.flashattn_attention_args_init(ctypes.byref(a))
    varlen = cu_seqlens_q is not None
    if q.device.type == "cuda":
        a.device = DEVICE_CUDA
        a.device_index = q.device.index if q.device.index is not None else torch.cuda.current_device()
        a.stream = torch.cuda.current_stream(q.device).cuda_stream
    elif q.device.type == "cpu":
        a.device = DEVICE_CPU
        a.num_threads = torch.get_num_threads()
    else:
        raise ValueError(f"q: device {q.device} is not supported (expected cpu or cuda)")
    a.backend = BACKENDS[backend]
    if q.dtype not in DTYPES:
        raise TypeError(f"q: dtype {q.dtype} is not supported")
    a.dtype = DTYPES[q.dtype]
    if varlen:
        a.batch = cu_seqlens_q.shape[0] - 1
        a.seqlen_q, a.seqlen_k = int(max_seqlen_q), int(max_seqlen_k)
        a.total_q, a.total_k = q.shape[0], k.shape[0]
        a.cu_seqlens_q, a.cu_seqlens_k = _ptr(cu_seqlens_q), _ptr(cu_seqlens_k)
    else:
        a.batch, a.seqlen_q, a.seqlen_k = q.shape[0], q.shape[1], k.shape[1]
    a.heads_q, a.heads_kv = q.shape[-2], k.shape[-2]
    a.head_dim, a.head_dim_v = q.shape[-1], v.shape[-1]
    a.q, a.k, a.v = (_tensor_ref(t, varlen) for t in (q, k, v))
    a.softmax_scale = math.nan if softmax_scale is None else softmax_scale
    a.causal = int(bool(causal))
    a.window_left, a.window_right = window_left, window_right
    a.softcap = softcap
    if alibi_slopes is not None:
        a.alibi_slopes = alibi_slopes.data_ptr()
        a.alibi_batch_stride = alibi_slopes.stride(0) if alibi_slopes.dim() == 2 else 0
    a.dropout_p = dropout_p
    if dropout_p > 0.0:
        if rng_state.is_cuda:
            # Read by the kernels when they run: a CUDA graph replay sees the pair its captured
            # RNG kernel wrote, not the one of the capture.
            a.dropout_seed_offset = rng_state.data_ptr()
        else:
            seed, offset = (int(x) for x in rng_state.tolist())
            a.dropout_seed, a.dropout_offset = seed, offset


def forward(q, k, v, out, lse, dropout_mask, cu_seqlens_q=None, cu_seqlens_k=None,
            max_seqlen_q=0, max_seqlen_k=0, dropout_p=0.0, softmax_scale=None, causal=False,
            window_left=-1, window_right=-1, softcap=0.0, alibi_slopes=None, rng_state=None,
            backend="automatic"):
    """Runs flashattn_forward writing into out, lse (contiguous layouts) and dropout_mask."""
    params = ForwardArgs()
    _fill_args(params.args, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               dropout_p, softmax_scale, causal, window_left, window_right, softcap,
               alibi_slopes, rng_state, backend)
    varlen = cu_seqlens_q is not None
    params.out = _tensor_ref(out, varlen)
    if lse is not None:
        params.lse = Lse(lse.data_ptr(), 0 if varlen else lse.stride(0), lse.stride(-2))
    params.dropout_mask = _ptr(dropout_mask)
    check(lib.flashattn_forward(ctypes.byref(params)))


def backward(dout, q, k, v, out, lse, dq, dk, dv, cu_seqlens_q=None, cu_seqlens_k=None,
             max_seqlen_q=0, max_seqlen_k=0, dropout_p=0.0, softmax_scale=None, causal=False,
             window_left=-1, window_right=-1, softcap=0.0, alibi_slopes=None,
             deterministic=False, rng_state=None, backend="automatic"):
    """Runs flashattn_backward writing dq, dk, dv."""
    params = BackwardArgs()
    _fill_args(params.args, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               dropout_p, softmax_scale, causal, window_left, window_right, softcap,
               alibi_slopes, rng_state, backend)
    varlen = cu_seqlens_q is not None
    params.out = _tensor_ref(out, varlen)
    params.dout = _tensor_ref(dout, varlen)
    params.lse = Lse(lse.data_ptr(), 0 if varlen else lse.stride(0), lse.stride(-2))
    params.dq, params.dk, params.dv = (_tensor_ref(t, varlen) for t in (dq, dk, dv))
    params.deterministic = int(bool(deterministic))
    workspace = None
    if params.args.device == DEVICE_CUDA:
        # Scratch from PyTorch's caching allocator on the current stream rather than the
        # library's own allocation: no cudaMalloc per call, and capturable in a CUDA graph.
        size = ctypes.c_uint64(0)
        check(lib.flashattn_backward_workspace_size(ctypes.byref(params), ctypes.byref(size)))
        if size.value > 0:
            workspace = torch.empty(size.value, dtype=torch.uint8, device=q.device)
            params.workspace, params.workspace_bytes = workspace.data_ptr(), size.value
    check(lib.flashattn_backward(ctypes.byref(params)))
