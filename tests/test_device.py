"""Devices: the automatic choice, the device of a model, and waiting for a device (a no-op on the CPU)."""

import torch

from course_lib import GatedPixelCNN, IndependentPixelModel
from course_lib.device import cpu_has_bf16, model_device, pick_device, synchronize


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda") and pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # an explicit choice is used as given


def test_model_device_reads_parameters_or_buffers():
    assert model_device(GatedPixelCNN((1, 4, 4), channels=4, dilations=(1,))) == torch.device("cpu")
    assert model_device(IndependentPixelModel((1, 2, 2))) == torch.device("cpu")  # buffers only
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # nothing at all: the CPU


def test_cpu_has_bf16_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16() is True


def test_synchronize_waits_only_on_asynchronous_devices(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize("cpu")
    synchronize("cuda:0")
    synchronize(torch.device("mps"))
    assert calls == [("cuda", torch.device("cuda", 0)), ("mps", None)]


def test_cpu_has_bf16_is_false_on_a_torch_without_the_probes(monkeypatch):
    """Older torch builds lack the CPU probes: then the answer is no, not an error."""
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_has_bf16() is False
