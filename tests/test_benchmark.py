"""Benchmark helpers: they time the real training step and leave the measured model alone."""
import torch


def test_training_throughput_measures_the_real_step_without_touching_the_model():
    from course_lib import GatedPixelCNN
    from course_lib.benchmark import training_throughput
    model = GatedPixelCNN((1, 8, 8), channels=8, dilations=(1,))
    before = [p.clone() for p in model.parameters()]
    result = training_throughput(model, batch_size=4, steps=3, warmup=1, device="cpu", precision="bf16")
    assert len(result["step_seconds"]) == 3 and result["images_per_s"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
