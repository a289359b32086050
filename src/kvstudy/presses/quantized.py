"""KV-cache quantization: `int8` / `int4` / `int2` through transformers' `QuantizedCache`, composable with any press.

As methods, `int8` and `int4` quantize the whole cache (no eviction) of the full-attention layers; sliding-window
layers keep the model's own window in full precision (`kvstudy.presses.cache`). As the variant option `quantization: int4`
on any press (slug suffix `+int4`, e.g. `knorm-cr0.50+int4`), eviction runs first and kvpress re-quantizes the
kept entries (its forward hook handles `QuantizedCache`).

Backends: int4/int2 use optimum-quanto (transformers' `QuantoQuantizedLayer`, its defaults: axis 0, groups of 64,
128 most recent tokens kept in full precision). transformers' quanto layer refuses 8 bits; int8 uses HQQ when it
is installed, else `QuantoInt8Layer` below: quanto's own symmetric `qint8` per token and head (one fp scale per
head_dim values), the only code written here, because no installed library offers an 8-bit KV cache.

Why int4 decode once took 100 s for 10 tokens on CPU (measured, see README): optimum-quanto registers a C++
`unpack` kernel for CPU that it JIT-compiles with ninja/g++ into its own site-packages directory the first time a
4-/2-bit tensor is dequantized (60 s on this shared 2-core machine; again after every torch upgrade, in every
fresh environment, and raced by parallel jobs). The unpacking itself is two bit operations. `use_torch_unpack()`
points quanto's CPU kernel at the same unpacking written in PyTorch ops (bit-identical results): after that,
int4 decode costs ~1.6x unquantized decode on the tiny model at 2k tokens instead of a minute-long first call.
"""

from __future__ import annotations

from kvstudy.presses import PressSpec, register

BITS = {"int8": 8, "int4": 4, "int2": 2}
RESIDUAL_LENGTH = 128  # transformers' default: recent tokens kept in full precision before re-quantizing
Q_GROUP_SIZE = 64  # transformers' default group size for int4/int2


def _torch_unpack(packed, bits: int):
    import torch

    per_byte = 8 // bits
    return torch.cat([(packed >> (bits * i)) & (2**bits - 1) for i in range(per_byte)]).to(torch.uint8)


def use_torch_unpack() -> None:
    """Make quanto unpack 4-/2-bit CPU tensors with PyTorch ops instead of JIT-compiling its C++ extension."""
    import types

    from optimum.quanto.library.extensions import get_extension

    ext = get_extension("quanto_cpp")
    if ext._lib is None:
        ext._lib = types.SimpleNamespace(unpack=_torch_unpack)


def hqq_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("hqq") is not None


def quantized_layer(quantization: str, backend: str = "auto") -> tuple[type, tuple, dict]:
    """(layer class, args, kwargs) of a quantized full-attention cache layer of the given kind; kvstudy.presses.cache
    builds the layers (sliding-window layers are not quantized)."""
    from transformers.cache_utils import HQQQuantizedLayer, QuantoQuantizedLayer

    bits = BITS[quantization]
    if backend == "auto":
        backend = "hqq" if bits == 8 and hqq_available() else "quanto"
    if backend == "hqq":
        return HQQQuantizedLayer, (bits,), dict(axis_key=1, axis_value=1, q_group_size=Q_GROUP_SIZE,
                                                residual_length=RESIDUAL_LENGTH)
    use_torch_unpack()
    if bits == 8:
        return _int8_layer_class(), (8, -1, -1), dict(residual_length=RESIDUAL_LENGTH)
    return QuantoQuantizedLayer, (bits,), dict(q_group_size=Q_GROUP_SIZE, residual_length=RESIDUAL_LENGTH)


def _int8_layer_class():
    """quanto qint8, symmetric, one scale per (head, token): absmax over head_dim / 127."""
    from optimum.quanto import qint8, quantize_weight
    from transformers.cache_utils import QuantizedLayer

    class QuantoInt8Layer(QuantizedLayer):
        def _quantize(self, tensor, axis):
            rows = tensor.reshape(-1, tensor.shape[-1])  # one row per (batch, head, token); quanto's axis 0
            scale = rows.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
            return quantize_weight(rows, qint8, 0, scale.to(tensor.dtype)), tuple(tensor.shape)

        def _dequantize(self, qtensor):
            q, shape = qtensor
            return q.dequantize().reshape(shape)

    return QuantoInt8Layer


for _kind in ("int8", "int4"):
    register(
        PressSpec(
            _kind,
            f"{_kind} KV cache through transformers' QuantizedCache (no eviction); compose with any press "
            f"as `quantization: {_kind}`",
            None,
            has_ratio=False,
            quantization=_kind,
        )
    )
