"""The implementations bench/attention.py times: ours (the flashattn Python package) and every
peer present in this process (PyTorch SDPA's backends; FlashInfer, FA3, FA4, flash_attn 2.x and
xformers when importable).

Each implementation takes q [b, s, hq, d], k and v [b, s, hk, d] (dense) or q [total, hq, d],
k and v [total, hk, d] with int32 cu_seqlens (varlen) and returns the output in the same layout,
so that every output can be compared with ours element by element. Gradients come from autograd
through that call. An implementation that cannot run a case raises; the suite records why.
"""

import contextlib
import importlib


class Impl:
    name = "?"
    label = "?"
    devices = ("cuda", "cpu")

    def context(self):
        """Entered once around all calls of a case (e.g. SDPA's backend choice)."""
        return contextlib.nullcontext()

    def dense(self, q, k, v, causal):
        raise NotImplementedError(f"{self.name}: no dense (batched) entry point")

    def varlen(self, q, k, v, cu_seqlens, max_seqlen, causal):
        raise NotImplementedError(f"{self.name}: no variable-length entry point")


class Ours(Impl):
    name, label = "ours", "flashattn (ours)"

    def __init__(self):
        import flashattn
        self.module = flashattn

    def dense(self, q, k, v, causal):
        return self.module.flash_attn_func(q, k, v, causal=causal)

    def varlen(self, q, k, v, cu_seqlens, max_seqlen, causal):
        return self.module.flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen,
                                                  max_seqlen, causal=causal)


class Sdpa(Impl):
    """torch.nn.functional.scaled_dot_product_attention with one backend forced. The inputs are
    the [b, s, h, d] tensors transposed (views, no copy), as a flash_attn caller would pass them.
    Varlen goes through nested (jagged) tensors."""

    def __init__(self, backend, name, label, devices=("cuda", "cpu")):
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        self.torch, self.sdpa_kernel = torch, sdpa_kernel
        self.backend = getattr(SDPBackend, backend)
        self.name, self.label, self.devices = name, label, devices

    def context(self):
        return self.sdpa_kernel([self.backend])

    def _sdpa(self, q, k, v, causal):
        gqa = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
        return self.torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                     **gqa)

    def dense(self, q, k, v, causal):
        out = self._sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal)
        return out.transpose(1, 2)

    def varlen(self, q, k, v, cu_seqlens, max_seqlen, causal):
        offsets = cu_seqlens.long()
        nested = [self.torch.nested.nested_tensor_from_jagged(t, offsets, max_seqlen=max_seqlen)
                  for t in (q, k, v)]
        out = self._sdpa(*(t.transpose(1, 2) for t in nested), causal)
        return out.transpose(1, 2).values()


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


class FlashAttn3(Impl):
    name, label, devices = "fa3", "FA3 (flash_attn_interface)", ("cuda",)

    def __init__(self):
        self.module = importlib.import_module("flash_attn_interface")

    def dense(self, q, k, v, causal):
        return _first(self.module.flash_attn_func(q, k, v, causal=causal))

    def varlen(self, q, k, v, cu_seqlens, max_seqlen, causal):
        return _first(self.module.flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens,
                                                         max_seqlen, max_seqlen, causal=causal))


class FlashAttn4(FlashAttn3):
    name, label = "fa4", "FA4 (flash_attn.cute)"

    def __init__(self):
        self.module = importlib.import_module("flash_attn.cute")


class FlashAttn2(FlashAttn3):
    name, label = "fa2-pkg", "flash_attn 2.x package"

    def __init__(self):
        self.module = importlib.import_module("flash_attn")


class Xformers(Impl):
    name, label, devices = "xformers", "xformers memory_efficient_attention", ("cuda",)

    def __init__(self):
        self.ops = importlib.import_module("xformers.ops")

    def dense(self, q, k, v, causal):
        bias = self.ops.LowerTriangularMask() if causal else None
        if q.shape[2] != k.shape[2]:  # GQA: xformers wants [b, s, g, h, d]
            g = k.shape[2]
            q5 = q.unflatten(2, (g, q.shape[2] // g))
            k5 = k.unsqueeze(3).expand(-1, -1, -1, q5.shape[3], -1)
            v5 = v.unsqueeze(3).expand(-1, -1, -1, q5.shape[3], -1)
            return self.ops.memory_efficient_attention(q5, k5, v5, attn_bias=bias).flatten(2, 3)
        return self.ops.memory_efficient_attention(q, k, v, attn_bias=bias)


class FlashInfer(Impl):
    """FlashInfer's ragged-KV prefill (forward only: FlashInfer has no backward)."""
    name, label, devices = "flashinfer", "FlashInfer (ragged prefill)", ("cuda",)

    def __init__(self):
        import torch
        self.torch = torch
        self.module = importlib.import_module("flashinfer")
        self.plans = {}

    def _run(self, q, k, v, cu_seqlens, causal):
        key = (tuple(cu_seqlens.tolist()), q.shape[1], k.shape[1], q.shape[2], causal, q.dtype)
        if key not in self.plans:
            workspace = self.torch.empty(256 << 20, dtype=self.torch.uint8, device=q.device)
            wrapper = self.module.BatchPrefillWithRaggedKVCacheWrapper(workspace, "NHD")
            wrapper.plan(cu_seqlens, cu_seqlens, q.shape[1], k.shape[1], q.shape[2],
                         causal=causal, q_data_type=q.dtype)
            self.plans[key] = wrapper
        return self.plans[key].run(q, k, v)

    def dense(self, q, k, v, causal):
        b, s = q.shape[:2]
        cu = self.torch.arange(0, (b + 1) * s, s, dtype=self.torch.int32, device=q.device)
        out = self._run(q.reshape(b * s, *q.shape[2:]), k.reshape(b * s, *k.shape[2:]),
                        v.reshape(b * s, *v.shape[2:]), cu, causal)
        return out.view(q.shape)

    def varlen(self, q, k, v, cu_seqlens, max_seqlen, causal):
        return self._run(q, k, v, cu_seqlens, causal)


OPTIONAL = [FlashInfer, FlashAttn3, FlashAttn4, FlashAttn2, Xformers]


def available(device):
    """(implementations to time, {name: why it is absent}) for this device."""
    impls, absent = [], {}
    try:
        impls.append(Ours())
    except Exception as error:  # noqa: BLE001 - any import failure is reported, not fatal
        absent["ours"] = f"{type(error).__name__}: {error}"
    try:
        if device == "cuda":
            impls += [Sdpa("FLASH_ATTENTION", "sdpa-flash", "SDPA FLASH (FA2)"),
                      Sdpa("CUDNN_ATTENTION", "sdpa-cudnn", "SDPA cuDNN"),
                      Sdpa("EFFICIENT_ATTENTION", "sdpa-efficient", "SDPA mem-efficient"),
                      Sdpa("MATH", "sdpa-math", "SDPA MATH")]
        else:
            impls += [Sdpa("FLASH_ATTENTION", "sdpa-flash", "torch SDPA (CPU flash)"),
                      Sdpa("MATH", "sdpa-math", "torch SDPA MATH")]
    except Exception as error:  # noqa: BLE001
        absent["sdpa"] = f"{type(error).__name__}: {error}"
    for cls in OPTIONAL:
        if device not in cls.devices:
            continue
        try:
            impls.append(cls())
        except Exception as error:  # noqa: BLE001
            absent[cls.name] = f"not importable ({type(error).__name__}: {error})"
    return impls, absent
