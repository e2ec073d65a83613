"""Training, checkpoints and resuming: round trip, exact resume, clear errors, nothing good overwritten."""
import math

import pytest
import torch

from course_lib import (CheckpointError, CourseError, GatedPixelCNN, PixelCNN, TrainingDiverged, fit, load_into,
                        load_model, save_checkpoint)
from course_lib.checkpoint import load_checkpoint


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(channels=8, dilations=(1, 2), **kw)


def test_fit_learns_and_returns_history(tiny_binary):
    train, test = tiny_binary
    model = small_model()
    history = fit(model, train, test, epochs=2, batch_size=32, lr=5e-3, device="cpu")
    assert history["epoch"] == [1, 2]
    assert all(len(v) == 2 for v in history.values())
    assert history["test_nats"][1] < history["test_nats"][0] < 784 * math.log(2)
    assert history["test_bpd"][1] == pytest.approx(history["test_nats"][1] / (784 * math.log(2)))


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    model = small_model(num_classes=10)
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3)
    payload = torch.load(path, weights_only=True)  # safe loading works
    assert payload["model_config"]["num_classes"] == 10 and payload["epoch"] == 3
    rebuilt = load_model(path)
    assert type(rebuilt) is GatedPixelCNN and rebuilt.config == model.config
    x = torch.randint(0, 2, (2, 1, 28, 28))
    y = torch.tensor([1, 2])
    assert torch.equal(rebuilt(x, y), model.eval()(x, y))


def test_resumed_run_ends_with_the_same_weights(tiny_binary, tmp_path):
    train, test = tiny_binary
    settings = dict(epochs=3, batch_size=32, lr=3e-3, device="cpu", seed=5)
    straight = small_model()
    fit(straight, train, test, checkpoint=tmp_path / "a.pt", **settings)

    first = small_model()
    with pytest.raises(KeyboardInterrupt):
        fit(first, train, test, checkpoint=tmp_path / "b.pt", on_epoch_end=interrupt_after_first_epoch, **settings)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 0
    resumed = small_model(seed=99)  # fresh weights: everything must come from the checkpoint
    history = fit(resumed, train, test, checkpoint=tmp_path / "b.pt", resume=True, **settings)
    assert history["epoch"] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def interrupt_after_first_epoch(epoch, history):
    if epoch == 0:
        raise KeyboardInterrupt


def test_dynamic_binarization_resumes_exactly(tmp_path):
    """Fresh random binary pixels every epoch, and still the same weights after a resume."""
    from course_lib import load_dataset
    train = load_dataset("mnist-subset", "train", limit=64, binarize="dynamic")
    settings = dict(epochs=2, batch_size=32, device="cpu")
    a = small_model()
    fit(a, train, checkpoint=tmp_path / "a.pt", **settings)
    b = small_model()
    with pytest.raises(KeyboardInterrupt):
        fit(b, train, checkpoint=tmp_path / "b.pt", on_epoch_end=interrupt_after_first_epoch, **settings)
    b = small_model(seed=1)
    fit(b, train, checkpoint=tmp_path / "b.pt", resume=True, **settings)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_corrupted_checkpoint_fails_clearly_and_stays_intact(tiny_binary, tmp_path):
    train, _ = tiny_binary
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted or incomplete"):
        load_model(path)
    with pytest.raises(CheckpointError, match="corrupted"):
        fit(small_model(), train, epochs=1, checkpoint=path, resume=True, device="cpu")
    assert path.read_bytes() == b"this is not a checkpoint"
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, small_model())
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_model(truncated)


def test_checkpoint_of_another_architecture_fails_clearly_and_stays_intact(tiny_binary, tmp_path):
    train, _ = tiny_binary
    path = save_checkpoint(tmp_path / "pixelcnn.pt", PixelCNN(channels=8, n_blocks=1))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="holds a pixelcnn model.*this model is a gated"):
        load_into(small_model(), path)
    with pytest.raises(CheckpointError, match="holds a pixelcnn"):
        fit(small_model(), train, epochs=1, checkpoint=path, resume=True, device="cpu")
    assert path.read_bytes() == before


def test_nan_loss_stops_clearly_and_keeps_the_good_checkpoint(tiny_binary, tmp_path):
    train, test = tiny_binary
    model = small_model()
    path = tmp_path / "good.pt"
    fit(model, train, test, epochs=1, checkpoint=path, device="cpu")
    good = path.read_bytes()
    with torch.no_grad():
        model.out2.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="NaN.*lower the learning rate"):
        fit(model, train, test, epochs=3, checkpoint=path, device="cpu")
    assert path.read_bytes() == good


def test_wrong_image_size_and_unknown_options_fail_clearly(tiny_binary):
    train, _ = tiny_binary
    model = GatedPixelCNN(image_shape=(1, 20, 20), channels=8, dilations=(1,))
    with pytest.raises(CourseError, match="built for 1x20x20 images but got 1x28x28"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.long))
    with pytest.raises(CourseError, match="model expects"):
        fit(model, train, epochs=1)
    with pytest.raises(CourseError, match="Unknown training option"):
        fit(small_model(), train, epocs=1)
    with pytest.raises(CourseError, match="fp16' needs a CUDA GPU"):
        fit(small_model(), train, epochs=1, precision="fp16", device="cpu")


def test_bf16_autocast_and_channels_last_train_on_cpu(tiny_binary):
    train, test = tiny_binary
    history = fit(small_model(), train, test, epochs=1, batch_size=48, precision="bf16", channels_last=True,
                  device="cpu")
    assert math.isfinite(history["test_nats"][0])


def test_tensorboard_logging(tiny_binary, tmp_path):
    train, test = tiny_binary
    fit(small_model(), train, test, epochs=1, batch_size=48, device="cpu", log_dir=tmp_path / "tb")
    assert any((tmp_path / "tb").iterdir())
