"""Devices: where tensors live and how to wait for them.

pick_device    "auto" -> CUDA if present, else Apple MPS, else the CPU
model_device   the device a model's parameters (or buffers) are on
cpu_has_bf16   whether this CPU computes in bf16 natively (then bf16 autocast pays off)
synchronize    wait for the queued GPU work: a GPU runs asynchronously, so timings need it
"""

import torch


def pick_device(device=None) -> torch.device:
    """`None`/"auto" -> CUDA if present, else Apple MPS, else CPU. Any other string is used as given."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model) -> torch.device:
    """The device holding the model's parameters (or buffers, for the baseline)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True when this CPU computes in bf16 natively (AVX512-BF16 or AMX): bf16 autocast is then faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def synchronize(device):
    """Wait until every queued kernel on `device` has finished (GPU work is asynchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
