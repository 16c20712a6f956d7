"""ctypes binding of the C ABI (include/flashattn/c_api.h): torch tensors in, status checked."""

import ctypes
import os
import struct

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


# The fields of Tensor and Lse, each written by one struct.pack_into (_write_tensor, _write_lse):
# building a Tensor and assigning it costs about a microsecond, and a backward call writes eight.
_TENSOR_FIELDS = struct.Struct("@P4q")
_LSE_FIELDS = struct.Struct("@P2q")


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

    for fields, struct_type in ((_TENSOR_FIELDS, Tensor), (_LSE_FIELDS, Lse)):
        if fields.size != ctypes.sizeof(struct_type):
            raise ImportError(f"flashattn: {struct_type.__name__} is {ctypes.sizeof(struct_type)} "
                              f"bytes, its struct.pack_into format {fields.size}")
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


def _write_tensor(params, offset, t, varlen):
    """Writes a [batch, rows, heads, dim] (or varlen [rows, heads, dim]) tensor as the
    flashattn_tensor at byte offset of params (a field's .offset, e.g. AttentionArgs.q.offset)."""
    if t is None:
        _TENSOR_FIELDS.pack_into(params, offset, 0, 0, 0, 0, 1)
        return
    s = t.stride()
    if varlen:
        _TENSOR_FIELDS.pack_into(params, offset, t.data_ptr(), 0, s[0], s[1], s[2])
    else:
        _TENSOR_FIELDS.pack_into(params, offset, t.data_ptr(), s[0], s[1], s[2], s[3])


def _ptr(t):
    return None if t is None else t.data_ptr()


def _with_library_defaults(params_type):
    """A params struct whose AttentionArgs hold flashattn_attention_args_init's defaults.

    Each call copies it (one memcpy in from_buffer_copy) instead of constructing a struct and
    calling into the library to initialise it: both are per-call host time that short problems
    feel, and the defaults cannot change while the library is loaded."""
    params = params_type()
    lib.flashattn_attention_args_init(ctypes.byref(params.args))
    return params


_FORWARD_DEFAULTS = _with_library_defaults(ForwardArgs)
_BACKWARD_DEFAULTS = _with_library_defaults(BackwardArgs)

# The current stream as an integer without building a torch.cuda.Stream object (the private
# binding exists in every PyTorch 2.x; the public call stays as the fallback).
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _current_stream(q):
    if _current_raw_stream is not None:
        return _current_raw_stream(q.get_device())
    return torch.cuda.current_stream(q.device).cuda_stream


def _fill_args(a, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
               softmax_scale, causal, window_left, window_right, softcap, alibi_slopes,
               rng_state, backend):
    """Fills a, which holds the library's defaults, with one call's problem."""
    varlen = cu_seqlens_q is not None
    if q.is_cuda:
        a.device = DEVICE_CUDA
        a.device_index = q.get_device()
        a.stream = _current_stream(q)
    elif q.device.type == "cpu":
        a.device = DEVICE_CPU
        a.num_threads = torch.get_num_threads()
    else:
        raise ValueError(f"q: device {q.device} is not supported (expected cpu or cuda)")
    a.backend = BACKENDS[backend]
    dtype = DTYPES.get(q.dtype)
    if dtype is None:
        raise TypeError(f"q: dtype {q.dtype} is not supported")
    a.dtype = dtype
    q_shape, k_shape = q.shape, k.shape
    if varlen:
        a.batch = cu_seqlens_q.shape[0] - 1
        a.seqlen_q = int(max_seqlen_q)
        a.seqlen_k = int(max_seqlen_k)
        a.total_q = q_shape[0]
        a.total_k = k_shape[0]
        a.cu_seqlens_q = _ptr(cu_seqlens_q)
        a.cu_seqlens_k = _ptr(cu_seqlens_k)
    else:
        a.batch = q_shape[0]
        a.seqlen_q = q_shape[1]
        a.seqlen_k = k_shape[1]
    a.heads_q = q_shape[-2]
    a.heads_kv = k_shape[-2]
    a.head_dim = q_shape[-1]
    a.head_dim_v = v.shape[-1]
    _write_tensor(a, AttentionArgs.q.offset, q, varlen)
    _write_tensor(a, AttentionArgs.k.offset, k, varlen)
    _write_tensor(a, AttentionArgs.v.offset, v, varlen)
    if softmax_scale is not None:  # else the default NaN: 1 / sqrt(head_dim)
        a.softmax_scale = softmax_scale
    if causal:
        a.causal = 1
    a.window_left = window_left
    a.window_right = window_right
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


def _write_lse(params, offset, lse, varlen):
    """Writes lse ([batch, heads, seqlen_q], varlen [heads, total_q]) as the flashattn_lse at
    byte offset of params."""
    _LSE_FIELDS.pack_into(params, offset, lse.data_ptr(), 0 if varlen else lse.stride(0),
                          lse.stride(-2))


def forward(q, k, v, out, lse, dropout_mask, cu_seqlens_q=None, cu_seqlens_k=None,
            max_seqlen_q=0, max_seqlen_k=0, dropout_p=0.0, softmax_scale=None, causal=False,
            window_left=-1, window_right=-1, softcap=0.0, alibi_slopes=None, rng_state=None,
            backend="automatic"):
    """Runs flashattn_forward writing into out, lse (contiguous layouts) and dropout_mask."""
    params = ForwardArgs.from_buffer_copy(_FORWARD_DEFAULTS)
    _fill_args(params.args, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               dropout_p, softmax_scale, causal, window_left, window_right, softcap,
               alibi_slopes, rng_state, backend)
    varlen = cu_seqlens_q is not None
    _write_tensor(params, ForwardArgs.out.offset, out, varlen)
    if lse is not None:
        _write_lse(params, ForwardArgs.lse.offset, lse, varlen)
    if dropout_mask is not None:
        params.dropout_mask = dropout_mask.data_ptr()
    check(lib.flashattn_forward(ctypes.byref(params)))


def backward(dout, q, k, v, out, lse, dq, dk, dv, cu_seqlens_q=None, cu_seqlens_k=None,
             max_seqlen_q=0, max_seqlen_k=0, dropout_p=0.0, softmax_scale=None, causal=False,
             window_left=-1, window_right=-1, softcap=0.0, alibi_slopes=None,
             deterministic=False, rng_state=None, backend="automatic"):
    """Runs flashattn_backward writing dq, dk, dv."""
    params = BackwardArgs.from_buffer_copy(_BACKWARD_DEFAULTS)
    a = params.args
    _fill_args(a, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               dropout_p, softmax_scale, causal, window_left, window_right, softcap,
               alibi_slopes, rng_state, backend)
    varlen = cu_seqlens_q is not None
    _write_tensor(params, BackwardArgs.out.offset, out, varlen)
    _write_tensor(params, BackwardArgs.dout.offset, dout, varlen)
    _write_lse(params, BackwardArgs.lse.offset, lse, varlen)
    _write_tensor(params, BackwardArgs.dq.offset, dq, varlen)
    _write_tensor(params, BackwardArgs.dk.offset, dk, varlen)
    _write_tensor(params, BackwardArgs.dv.offset, dv, varlen)
    if deterministic:
        params.deterministic = 1
    workspace = None
    if a.device == DEVICE_CUDA:
        # Scratch from PyTorch's caching allocator on the current stream rather than the
        # library's own allocation: no cudaMalloc per call, and capturable in a CUDA graph.
        size = ctypes.c_uint64(0)
        check(lib.flashattn_backward_workspace_size(ctypes.byref(params), ctypes.byref(size)))
        size = size.value
        if size > 0:
            workspace = q.new_empty(size, dtype=torch.uint8)
            params.workspace = workspace.data_ptr()
            params.workspace_bytes = size
    check(lib.flashattn_backward(ctypes.byref(params)))
