"""Training: schedule, loss, clipping, the epoch loop, checkpoints, resuming, options and clear errors.

Everything runs on tiny 6x6 models and data sets built from tensors, so the whole file takes seconds.
"""

import copy
import functools
import math
import random
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import course_lib.train as train_module
from course_lib import (
    CourseError,
    GatedPixelCNN,
    ImageDataset,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    fit,
    pick_device,
    seed_everything,
)
from course_lib.checkpoint import load_checkpoint
from course_lib.config import epoch_seed
from course_lib.distributed import ShardSampler
from course_lib.train import cpu_has_bf16, fast_options, learning_rate

SHAPE = (1, 6, 6)


def tiny_data(n=10, shape=SHAPE, seed=0, levels=2, binarize="threshold", name="tiny"):
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(name, torch.rand(n, *shape, generator=g), torch.arange(n) % 3, levels=levels, binarize=binarize)


def tiny_model(seed=0, shape=SHAPE, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(image_shape=shape, channels=4, dilations=(1,), **kw)


def reference_nll(model, x, labels=None):
    """Per-image NLL in nats of binary images, computed by hand: sum over sub-pixels of softplus(l) - x*l."""
    logits = model(x, labels).double()
    return (F.softplus(logits) - x.double() * logits).flatten(1).sum(1)


def record_inputs(model):
    """Forward pre-hook: the list of (x, model.training) of every forward call."""
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append((args[0].clone(), module.training)))
    return seen


class SpyBar:
    """Stands in for tqdm: keeps its keyword arguments and set_postfix calls."""

    made = []

    def __init__(self, iterable, **kwargs):
        self.iterable, self.kwargs, self.postfix = iterable, kwargs, []
        SpyBar.made.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **kwargs):
        self.postfix.append(kwargs)


def fake_mps(monkeypatch, available):
    """Pretend Apple MPS is (not) available (keeping `__wrapped__`, which torch._dynamo looks up)."""
    monkeypatch.setattr(
        torch.backends.mps, "is_available", functools.wraps(torch.backends.mps.is_available)(lambda: available)
    )


@pytest.fixture
def spy_bar(monkeypatch):
    SpyBar.made = []
    monkeypatch.setattr(train_module, "tqdm", SpyBar)
    return SpyBar.made


# -- pure functions ------------------------------------------------------------------------------------
def test_train_config_defaults_are_the_documented_ones():
    assert asdict(TrainConfig()) == dict(
        epochs=10,
        batch_size=32,
        lr=2e-3,
        weight_decay=0.0,
        schedule="cosine",
        warmup_steps=0,
        clip=1.0,
        precision="fp32",
        channels_last=False,
        compile=False,
        seed=0,
        num_workers=0,
        eval_batch_size=256,
        check_every=20,
    )


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_zero():
    cfg = TrainConfig(lr=0.1, warmup_steps=4)
    assert learning_rate(cfg, 0, 20) == pytest.approx(0.025)  # first step: lr / warmup_steps, never 0
    assert learning_rate(cfg, 3, 20) == pytest.approx(0.1)  # last warm-up step reaches lr
    assert learning_rate(cfg, 4, 20) == pytest.approx(0.1)  # the cosine starts at lr
    assert learning_rate(cfg, 12, 20) == pytest.approx(0.05)  # half-way through the cosine
    assert learning_rate(cfg, 19, 20) == pytest.approx(0.05 * (1 + math.cos(math.pi * 15 / 16)))
    assert learning_rate(cfg, 20, 20) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(cfg, 4, 4) == pytest.approx(0.1)  # no steps after warm-up: no division by zero
    no_warmup = TrainConfig(lr=0.1)
    assert learning_rate(no_warmup, 0, 10) == pytest.approx(0.1)
    assert learning_rate(no_warmup, 5, 10) == pytest.approx(0.05)


def test_constant_schedule_keeps_lr_after_the_warm_up():
    cfg = TrainConfig(lr=0.1, schedule="constant", warmup_steps=2)
    assert [learning_rate(cfg, s, 10) for s in range(5)] == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1])
    assert learning_rate(cfg, 9, 10) == pytest.approx(0.1)


def test_fast_options_per_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(train_module, "cpu_has_bf16", lambda: False)
    assert fast_options("cuda", batch_size=24, lr=1e-3) == dict(
        precision="bf16", channels_last=True, compile=True, batch_size=96, lr=pytest.approx(2e-3)
    )
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert fast_options(torch.device("cuda", 0), batch_size=24, lr=1e-3)["precision"] == "fp16"
    assert fast_options("cpu", batch_size=24, lr=1e-3) == dict(batch_size=24, lr=1e-3)
    assert fast_options("mps", batch_size=24, lr=1e-3) == dict(batch_size=24, lr=1e-3)
    monkeypatch.setattr(train_module, "cpu_has_bf16", lambda: True)
    assert fast_options("cpu", batch_size=24, lr=1e-3) == dict(precision="bf16", batch_size=24, lr=1e-3)
    assert fast_options("mps", batch_size=24, lr=1e-3) == dict(batch_size=24, lr=1e-3)


def test_cpu_has_bf16_asks_the_cpu_and_is_false_when_torch_cannot_tell(monkeypatch):
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in names:
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, names[1], lambda: True)
    assert cpu_has_bf16() is True
    for name in names:
        monkeypatch.delattr(torch.cpu, name)
    assert cpu_has_bf16() is False


def test_pick_device_prefers_cuda_then_mps_then_cpu_and_honours_a_given_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_mps(monkeypatch, True)
    assert pick_device() == torch.device("cuda") and pick_device("auto") == torch.device("cuda")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("mps")
    fake_mps(monkeypatch, False)
    assert pick_device(None) == torch.device("cpu")


def test_seed_everything_seeds_python_numpy_and_torch():
    for seed in (100, 2**32 + 7):  # numpy only takes seeds below 2**32: it gets seed mod 2**32
        seed_everything(seed)
        drawn = (random.random(), np.random.rand(), torch.rand(1).item())
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        assert drawn == (random.random(), np.random.rand(), torch.rand(1).item())


# -- errors ------------------------------------------------------------------------------------------
def test_bad_settings_fail_clearly():
    data, model = tiny_data(), tiny_model()
    with pytest.raises(CourseError, match="Unknown precision 'fp8'"):
        fit(model, data, precision="fp8", device="cpu")
    with pytest.raises(CourseError, match="Unknown schedule 'linear'"):
        fit(model, data, schedule="linear", device="cpu")
    with pytest.raises(CourseError, match="Unknown training option"):
        fit(model, data, epocs=1, device="cpu")
    with pytest.raises(CourseError, match=r"fp16' needs a CUDA GPU or the CPU \(not meta\)"):
        fit(model, data, precision="fp16", device="meta")
    with pytest.raises(CourseError, match="training set is empty"):
        fit(model, tiny_data(n=0), device="cpu")


def test_data_that_do_not_fit_the_model_fail_clearly():
    with pytest.raises(CourseError, match=r"2-level \(1, 5, 5\) images but the model expects 2-level \(1, 6, 6\)"):
        fit(tiny_model(), tiny_data(shape=(1, 5, 5)), device="cpu")
    with pytest.raises(CourseError, match=r"4-level \(1, 6, 6\) images but the model expects 2-level"):
        fit(tiny_model(), tiny_data(levels=4), device="cpu")


# -- one step ------------------------------------------------------------------------------------------
def test_loss_is_the_batch_mean_of_the_per_image_nll():
    data = tiny_data(n=6)
    x, y = data.images, data.labels
    model = tiny_model()
    trainer = Trainer(model, data, device="cpu")
    assert trainer.loss(x, y).item() == pytest.approx(reference_nll(model, x).mean().item(), rel=1e-5)
    conditional = tiny_model(num_classes=3)
    trainer = Trainer(conditional, data, device="cpu")
    expected = reference_nll(conditional, x, y).mean().item()
    assert trainer.loss(x, y).item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(reference_nll(conditional, x, (y + 1) % 3).mean().item(), rel=1e-4)


def reference_step(model, optimizer, x, lr, clip):
    """Adam on the gradient of the batch-mean NLL, rescaled to norm `clip` (as clip_grad_norm_ does)."""
    optimizer.param_groups[0]["lr"] = lr
    optimizer.zero_grad()
    loss = reference_nll(model, x).float().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum(g.double().pow(2).sum() for g in grads)).item()
    assert norm > 2 * clip  # so the clipping matters
    for g in grads:
        g.mul_(clip / (norm + 1e-6))
    optimizer.step()
    return loss.item()


def assert_same_step(trainer, model, reference):
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), name
        assert torch.allclose(p, q, rtol=0, atol=2e-6), name


def test_step_takes_adam_steps_on_the_clipped_gradient_at_the_given_lr():
    data = tiny_data(n=8)
    x, y = data.images, data.labels
    model = tiny_model()
    reference = copy.deepcopy(model)
    clip, wd = 0.05, 0.1
    trainer = Trainer(model, data, config=TrainConfig(clip=clip, lr=123.0, weight_decay=wd), device="cpu")
    optimizer = torch.optim.Adam(reference.parameters(), lr=1.0, weight_decay=wd)
    for lr in (0.01, 0.003):
        loss = trainer.step(x, y, lr)
        assert not loss.requires_grad  # a detached number, not a graph
        assert loss.item() == pytest.approx(reference_step(reference, optimizer, x, lr, clip), rel=1e-5)
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None))
        assert norm.item() == pytest.approx(clip, rel=1e-4)
        assert_same_step(trainer, model, reference)
        assert trainer.optimizer.param_groups[0]["lr"] == lr


def test_step_without_clipping_keeps_the_raw_gradient():
    data = tiny_data(n=8)
    model = tiny_model()
    reference = copy.deepcopy(model)
    Trainer(model, data, config=TrainConfig(clip=None), device="cpu").step(data.images, data.labels, 0.01)
    reference_nll(reference, data.images).float().mean().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_gradient_scaler_path_unscales_before_clipping_and_is_checkpointed(tmp_path):
    """The fp16 path's gradient scaler (here the CPU's, with a small scale): same step as without a scaler,
    the scale is updated after the step, and resuming restores the scaler's state."""
    data = tiny_data(n=8)
    model = tiny_model()
    reference = copy.deepcopy(model)
    trainer = Trainer(model, data, config=TrainConfig(clip=0.05), device="cpu", checkpoint=tmp_path / "c.pt")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1.0)
    trainer.step(data.images, data.labels, 0.01)
    reference_step(reference, optimizer, data.images, 0.01, 0.05)
    assert_same_step(trainer, model, reference)
    assert trainer.scaler.get_scale() == 32.0  # update() ran: no overflow, so the scale grew
    trainer.save(0)
    again = Trainer(tiny_model(seed=1), data, config=TrainConfig(clip=0.05), device="cpu", checkpoint=tmp_path / "c.pt")
    again.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    again.resume()
    assert again.scaler.get_scale() == 32.0


def test_fp16_on_the_cpu_skips_overflowing_steps_and_halves_the_scale_until_the_gradients_fit():
    """fp16 runs on the CPU through the CPU's GradScaler: it starts at 2**16; a step whose scaled gradients
    overflow fp16 leaves the weights untouched and halves the scale; once they fit, the weights move and the
    scale holds."""
    data = tiny_data(n=8)
    trainer = Trainer(tiny_model(), data, config=TrainConfig(precision="fp16"), device="cpu")
    assert trainer.scaler is not None and trainer.scaler.is_enabled() and trainer.scaler.get_scale() == 2.0**16
    with trainer.autocast():
        assert F.linear(torch.randn(3, 8), torch.randn(5, 8)).dtype == torch.float16
    skipped = 0
    for _ in range(30):
        before = [p.detach().clone() for p in trainer.model.parameters()]
        scale = trainer.scaler.get_scale()
        trainer.step(data.images, data.labels, 0.01)
        moved = any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
        if trainer.scaler.get_scale() == scale / 2:
            assert not moved, "an overflowing step must be skipped"
            skipped += 1
        else:
            assert trainer.scaler.get_scale() == scale and moved
            break
    assert skipped >= 1  # this model's gradients overflow fp16 at the initial scale
    assert 0 < trainer.scaler.get_scale() < 2.0**16


def test_fit_trains_in_fp16_on_the_cpu_and_checkpoints_the_scaler(tmp_path):
    history = fit(
        tiny_model(),
        tiny_data(n=8),
        epochs=2,
        batch_size=4,
        precision="fp16",
        device="cpu",
        checkpoint=tmp_path / "c.pt",
    )
    assert all(math.isfinite(v) for v in history["train_nats"])
    scaler = load_checkpoint(tmp_path / "c.pt")["scaler"]
    assert scaler is not None and scaler["scale"] < 2.0**16  # the overflowing first steps halved it


def test_autocast_uses_the_configured_precision_and_the_loss_stays_float32():
    data = tiny_data(n=4)
    a, b = torch.randn(3, 8), torch.randn(5, 8)
    trainer = Trainer(tiny_model(), data, config=TrainConfig(precision="fp32"), device="cpu")
    with trainer.autocast():
        assert F.linear(a, b).dtype == torch.float32
    trainer = Trainer(tiny_model(), data, config=TrainConfig(precision="bf16"), device="cpu")
    with trainer.autocast():
        assert F.linear(a, b).dtype == torch.bfloat16
    assert trainer.loss(data.images, data.labels).dtype == torch.float32
    trainer.cfg.precision = "fp16"  # the mapping to float16 is what is checked here
    with trainer.autocast():
        assert F.linear(a, b).dtype == torch.float16


# -- the epoch loop -------------------------------------------------------------------------------------
def test_epoch_train_nll_weights_every_image_equally_and_test_nll_is_evaluated():
    """lr=0 keeps the weights fixed, so the epoch's train NLL must be the mean over all 10 images, even
    though the last batch holds only 2 of them."""
    data, test = tiny_data(n=10), tiny_data(n=5, seed=1)
    model = tiny_model()
    with torch.no_grad():
        expected_train = reference_nll(model, data.images).mean().item()
        expected_test = reference_nll(model, test.images).mean().item()
    history = fit(model, data, test, epochs=1, batch_size=4, lr=0.0, device="cpu")
    assert type(history["train_nats"][0]) is float
    assert history["train_nats"][0] == pytest.approx(expected_train, rel=1e-6)
    assert history["test_nats"][0] == pytest.approx(expected_test, rel=1e-6)
    assert history["test_bpd"][0] == pytest.approx(expected_test / (36 * math.log(2)), rel=1e-6)
    without_test = fit(model, data, epochs=1, batch_size=4, lr=0.0, device="cpu")
    assert without_test["test_nats"] == [None] and without_test["test_bpd"] == [None]


def test_epochs_visit_every_image_in_the_seeded_order_in_train_mode():
    data = tiny_data(n=10)
    model = tiny_model().eval()
    seen = record_inputs(model)
    fit(model, data, epochs=2, batch_size=4, seed=7, device="cpu")
    assert [x.shape[0] for x, _ in seen] == [4, 4, 2, 4, 4, 2]
    assert all(training for _, training in seen)
    for epoch in range(2):
        order = ShardSampler(10, seed=7, epoch=epoch).indices()
        assert sorted(order) == list(range(10)) and order != list(range(10))
        visited = torch.cat([x for x, _ in seen[3 * epoch : 3 * epoch + 3]])
        assert torch.equal(visited, data.images[order])


def test_history_lr_schedule_and_seconds_over_epochs():
    """9 images in batches of 4: 3 steps per epoch (the partial batch counts), 9 steps in all."""
    data = tiny_data(n=9)
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.01, warmup_steps=2)
    trainer = Trainer(tiny_model(), data, config=cfg, device="cpu")
    before = time.perf_counter()
    history = trainer.run()
    elapsed = time.perf_counter() - before
    assert history["epoch"] == [1, 2, 3]
    assert history["lr"] == pytest.approx([learning_rate(cfg, s, 9) for s in (2, 5, 8)])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(learning_rate(cfg, 8, 9))
    assert all(0 <= s <= elapsed for s in history["seconds"])
    assert all(len(v) == 3 for v in history.values())


def test_fit_learns():
    """Sparse images (about 2 pixels in 7 set): a trained model beats the untrained one's ~ln 2 per pixel."""
    g = torch.Generator().manual_seed(0)
    data, test = (ImageDataset("sparse", 0.7 * torch.rand(n, *SHAPE, generator=g), torch.zeros(n)) for n in (16, 8))
    history = fit(tiny_model(), data, test, epochs=3, batch_size=4, lr=2e-2, device="cpu")
    assert history["test_nats"][2] < history["test_nats"][0]
    assert history["train_nats"][2] < history["train_nats"][0]


def test_any_data_set_of_image_label_pairs_trains(tmp_path):
    """Plain (x, y) pairs work: the image shape is read from the first pair; the checkpoint records what is known."""
    images = tiny_data(n=6).images
    pairs = torch.utils.data.TensorDataset(images, torch.zeros(6, dtype=torch.long))
    history = fit(tiny_model(), pairs, epochs=1, batch_size=4, checkpoint=tmp_path / "c.pt", device="cpu")
    assert history["epoch"] == [1]
    assert load_checkpoint(tmp_path / "c.pt")["data"] == {}
    wrong = torch.utils.data.TensorDataset(images[:, :, :5, :5], torch.zeros(6, dtype=torch.long))
    with pytest.raises(CourseError, match=r"2-level \(1, 5, 5\) images but the model expects"):
        fit(tiny_model(), wrong, device="cpu")


def test_a_single_image_is_a_training_set():
    history = fit(tiny_model(), tiny_data(n=1), epochs=1, batch_size=4, device="cpu")
    assert history["epoch"] == [1]


def test_loader_batches_sampler_and_workers():
    trainer = Trainer(tiny_model(), tiny_data(n=10), config=TrainConfig(batch_size=4, num_workers=2), device="cpu")
    loader = trainer.loader(3)
    assert loader.batch_size == 4 and loader.num_workers == 2 and loader.pin_memory is False
    assert list(loader.sampler) == ShardSampler(10, seed=0, epoch=3).indices()


def test_each_epoch_reseeds_the_global_generator_with_its_epoch_seed(monkeypatch):
    """Dynamic binarization draws from torch's global generator: each epoch starts it at epoch_seed(seed, epoch)."""
    trainer = Trainer(tiny_model(), tiny_data(n=4), config=TrainConfig(epochs=3, batch_size=4, seed=4), device="cpu")
    seeds, real = [], torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: (seeds.append(seed), real(seed))[1])
    trainer.run()
    assert seeds == [epoch_seed(4, epoch) for epoch in range(3)]


def test_dynamic_binarization_depends_on_seed_and_epoch():
    data = tiny_data(n=12, binarize="dynamic")

    def draws(seed):
        model = tiny_model()
        seen = record_inputs(model)
        fit(model, data, epochs=2, batch_size=12, seed=seed, device="cpu")
        out = []
        for epoch, (x, _) in enumerate(seen):
            order = ShardSampler(12, seed=seed, epoch=epoch).indices()
            images = torch.empty_like(x)
            images[order] = x
            out.append(images)
        return out

    a, b, again = draws(1), draws(2), draws(1)
    assert all(torch.equal(p, q) for p, q in zip(a, again))
    assert not torch.equal(a[0], a[1])  # fresh pixels every epoch
    assert not torch.equal(a[0], b[0])  # and for every seed


# -- checkpoints and resuming -----------------------------------------------------------------------------
def interrupt_after_first_epoch(epoch, history):
    if epoch == 0:
        raise KeyboardInterrupt


def test_checkpoint_after_each_epoch_holds_epoch_history_config_and_data(tmp_path):
    data, test = tiny_data(n=10), tiny_data(n=4, seed=1)
    path = tmp_path / "run" / "c.pt"
    calls = []

    def on_epoch_end(epoch, history):
        payload = load_checkpoint(path)  # already written when the callback runs
        calls.append((epoch, payload["epoch"], copy.deepcopy(history), payload["history"]))

    model = tiny_model()
    history = fit(
        model,
        data,
        test,
        epochs=2,
        batch_size=4,
        lr=0.01,
        seed=3,
        checkpoint=path,
        on_epoch_end=on_epoch_end,
        device="cpu",
    )
    assert [c[:2] for c in calls] == [(0, 0), (1, 1)]
    assert [len(c[2]["epoch"]) for c in calls] == [1, 2]
    assert all(c[2] == c[3] for c in calls)
    payload = load_checkpoint(path)
    assert payload["history"] == history
    assert payload["train_config"] == asdict(TrainConfig(epochs=2, batch_size=4, lr=0.01, seed=3))
    assert payload["data"] == {"name": "tiny", "levels": 2, "binarize": "threshold", "image_shape": SHAPE}
    assert payload["scaler"] is None
    assert len(payload["optimizer"]["state"]) > 0
    for name, value in model.state_dict().items():
        assert torch.equal(payload["state_dict"][name], value), name


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    data, test = tiny_data(n=10), tiny_data(n=4, seed=1)
    settings = dict(epochs=3, batch_size=4, lr=1e-2, warmup_steps=2, seed=5, device="cpu")
    straight = tiny_model()
    expected = fit(straight, data, test, checkpoint=tmp_path / "a.pt", **settings)

    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(), data, test, checkpoint=tmp_path / "b.pt", on_epoch_end=interrupt_after_first_epoch, **settings
        )
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 0
    resumed = tiny_model(seed=99)  # fresh weights: everything must come from the checkpoint
    history = fit(resumed, data, test, checkpoint=tmp_path / "b.pt", resume=True, **settings)
    for key in ("epoch", "train_nats", "test_nats", "lr"):
        assert history[key] == expected[key], key
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_dynamic_binarization_resumes_exactly(tmp_path):
    data = tiny_data(n=8, binarize="dynamic")
    settings = dict(epochs=2, batch_size=4, device="cpu")
    a = tiny_model()
    fit(a, data, checkpoint=tmp_path / "a.pt", **settings)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), data, checkpoint=tmp_path / "b.pt", on_epoch_end=interrupt_after_first_epoch, **settings)
    b = tiny_model(seed=1)
    fit(b, data, checkpoint=tmp_path / "b.pt", resume=True, **settings)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    data = tiny_data(n=4)
    assert fit(tiny_model(), data, epochs=1, resume=True, device="cpu")["epoch"] == [1]
    history = fit(tiny_model(), data, epochs=1, resume=True, checkpoint=tmp_path / "new.pt", device="cpu")
    assert history["epoch"] == [1] and (tmp_path / "new.pt").is_file()


def test_nan_loss_stops_at_the_first_check_and_keeps_the_good_checkpoint(tmp_path):
    data, test = tiny_data(n=10), tiny_data(n=4, seed=1)
    model = tiny_model()
    path = tmp_path / "good.pt"
    fit(model, data, test, epochs=1, batch_size=2, checkpoint=path, device="cpu")
    good = path.read_bytes()
    with torch.no_grad():
        model.out2.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"training loss .* epoch 1, step 3;.*" + str(path.name)):
        fit(model, data, test, epochs=2, batch_size=2, check_every=3, checkpoint=path, device="cpu")
    assert path.read_bytes() == good


def test_nan_loss_is_caught_at_the_end_of_the_epoch_without_test_data():
    model = tiny_model()
    with torch.no_grad():
        model.out2.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"training loss .* epoch 1, step 5;") as err:
        fit(model, tiny_data(n=10), epochs=1, batch_size=2, device="cpu")
    assert "checkpoint" not in str(err.value)


# -- options -----------------------------------------------------------------------------------------------
def test_an_explicit_device_wins_over_auto_detection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake_mps(monkeypatch, True)  # auto-detection would pick "mps"
    history = fit(tiny_model(), tiny_data(n=4), epochs=1, device="cpu")
    assert history["epoch"] == [1]


def test_compile_wraps_the_forward_pass(monkeypatch):
    compiled = []

    def fake_compile(module):
        compiled.append(module)
        return lambda *args: (compiled.append("called"), module(*args))[1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = tiny_model()
    fit(model, tiny_data(n=4), epochs=1, batch_size=2, device="cpu")
    assert compiled == []
    fit(model, tiny_data(n=4), epochs=1, batch_size=2, compile=True, device="cpu")
    assert compiled == [model, "called", "called"]


def test_bf16_and_channels_last_train_on_the_cpu():
    data = tiny_data(n=6, shape=(3, 4, 4))
    model = tiny_model(shape=(3, 4, 4))
    seen = record_inputs(model)
    history = fit(model, data, data, epochs=1, batch_size=3, precision="bf16", channels_last=True, device="cpu")
    assert math.isfinite(history["test_nats"][0]) and math.isfinite(history["train_nats"][0])
    steps = [x for x, training in seen if training]
    assert len(steps) == 2
    assert all(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in steps)
    weight = model.v_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_progress_bar_shows_epoch_steps_and_running_nll(spy_bar, monkeypatch):
    data = tiny_data(n=10)
    model = tiny_model()
    with torch.no_grad():
        nll = reference_nll(model, data.images)
    fit(model, data, epochs=2, batch_size=2, lr=0.0, check_every=2, progress=True, device="cpu")
    assert [bar.kwargs for bar in spy_bar] == [
        dict(total=5, desc=f"epoch {e}/2", disable=False, leave=False) for e in (1, 2)
    ]
    for epoch, bar in enumerate(spy_bar):
        order = ShardSampler(10, seed=0, epoch=epoch).indices()
        expected = [nll[order[:k]].mean().item() for k in (4, 8)]
        assert [float(p["nats"]) for p in bar.postfix] == pytest.approx(expected, abs=0.0051)


@pytest.mark.parametrize(
    "progress, env, shown",
    [(None, "1", False), (None, "0", True), (None, None, True), (True, "1", True), (False, "0", False)],
)
def test_progress_follows_the_argument_or_tqdm_disable(spy_bar, monkeypatch, progress, env, shown):
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    fit(tiny_model(), tiny_data(n=2), epochs=1, batch_size=2, progress=progress, device="cpu")
    assert spy_bar[0].kwargs["disable"] is not shown


def test_tensorboard_logs_bpd_and_nats_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, test = tiny_data(n=4), tiny_data(n=4, seed=1)
    history = fit(tiny_model(), data, test, epochs=2, batch_size=4, device="cpu", log_dir=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    bits = 36 * math.log(2)
    for tag, values in (
        ("train/bpd", [n / bits for n in history["train_nats"]]),
        ("test/bpd", history["test_bpd"]),
        ("test/nats", history["test_nats"]),
    ):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2], tag
        assert [s.value for s in scalars] == pytest.approx(values, rel=1e-5), tag


def test_log_dir_without_tensorboard_installed_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(CourseError, match="needs the tensorboard package"):
        fit(tiny_model(), tiny_data(n=2), epochs=1, device="cpu", log_dir=tmp_path / "tb")


def test_no_tensorboard_files_without_log_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(tiny_model(), tiny_data(n=2), epochs=1, device="cpu")
    assert list(tmp_path.iterdir()) == []


# -- a torchrun job, faked in one process --------------------------------------------------------------------
class FakeDDP(torch.nn.Module):
    """Stands in for DistributedDataParallel: forwards to the model and remembers how it was built."""

    made = []

    def __init__(self, module, device_ids=None):
        super().__init__()
        self.module, self.device_ids, self.calls = module, device_ids, 0
        FakeDDP.made.append(self)

    def forward(self, *args):
        self.calls += 1
        return self.module(*args)


@pytest.fixture
def fake_torchrun(monkeypatch):
    """Process `rank` of a 2-process job, without a process group: returns the record of what happened."""
    record = {"barrier": 0, "evaluate": [], "in_group": False, "teardown": 0}
    FakeDDP.made = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(train_module.distributed, "setup", lambda device: device)
    monkeypatch.setattr(train_module.distributed, "in_group", lambda: record["in_group"])
    monkeypatch.setattr(
        train_module.distributed, "teardown", lambda: record.__setitem__("teardown", record["teardown"] + 1)
    )
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: record.__setitem__("barrier", record["barrier"] + 1))
    real_evaluate = train_module.evaluate

    def evaluate(model, data, batch_size, device, distributed=False):
        record["evaluate"].append(distributed)
        return real_evaluate(model, data, batch_size, device)

    monkeypatch.setattr(train_module, "evaluate", evaluate)

    def as_rank(rank):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        return record

    return as_rank


@pytest.mark.parametrize("rank", [0, 1])
def test_each_process_of_a_torchrun_job_trains_its_shard(fake_torchrun, spy_bar, tmp_path, rank):
    record = fake_torchrun(rank)
    data, test = tiny_data(n=9), tiny_data(n=4, seed=1)
    model = tiny_model()
    seen = record_inputs(model)
    path, logs = tmp_path / "c.pt", tmp_path / "tb"
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.01)
    history = fit(model, data, test, checkpoint=path, log_dir=logs, progress=True, device="cpu", **asdict(cfg))
    # 9 images over 2 processes: 5 each (one padded), in local batches of 2: 3 steps per epoch
    steps = [x for x, training in seen if training]
    assert [x.shape[0] for x in steps] == [2, 2, 1] * 2
    shard = ShardSampler(9, seed=0, epoch=1, rank=rank, world_size=2).indices()
    assert torch.equal(torch.cat(steps[3:]), data.images[shard])
    assert history["lr"] == pytest.approx([learning_rate(cfg, s, 6) for s in (2, 5)])
    assert len(FakeDDP.made) == 1 and FakeDDP.made[0].module is model and FakeDDP.made[0].device_ids is None
    assert FakeDDP.made[0].calls == 6
    assert record["evaluate"] == [True, True] and record["barrier"] == 2
    assert record["teardown"] == 1  # the run joined the process group, so it leaves it at the end
    assert path.exists() == (rank == 0) and logs.exists() == (rank == 0)  # only rank 0 writes files
    assert [bar.kwargs["disable"] for bar in spy_bar] == [rank != 0] * 2


def test_a_process_group_made_by_the_caller_is_left_to_the_caller(fake_torchrun, monkeypatch):
    record = fake_torchrun(0)
    record["in_group"] = True
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: None)  # the other process adds nothing
    fit(tiny_model(), tiny_data(n=4), epochs=1, batch_size=2, device="cpu")
    assert record["teardown"] == 0


def test_a_global_batch_must_split_evenly_over_the_processes(fake_torchrun):
    fake_torchrun(0)
    with pytest.raises(CourseError, match="batch_size=5 does not split evenly over 2 processes"):
        fit(tiny_model(), tiny_data(n=4), batch_size=5, device="cpu")


def test_training_needs_only_pairs_and_a_length(tmp_path):
    """A plain torch Dataset of (x, y) pairs trains and checkpoints; the checkpoint records what the data has."""
    from course_lib.checkpoint import load_checkpoint

    class Pairs(torch.utils.data.Dataset):
        def __init__(self, n):
            g = torch.Generator().manual_seed(n)
            self.x = torch.randint(0, 2, (n, 1, 5, 5), generator=g)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, k):
            return self.x[k], torch.tensor(0)

    model = GatedPixelCNN((1, 5, 5), channels=4, dilations=(1,))
    history = fit(model, Pairs(8), Pairs(4), epochs=1, batch_size=4, device="cpu", checkpoint=tmp_path / "c.pt")
    assert history["epoch"] == [1] and math.isfinite(history["test_nats"][0])
    assert load_checkpoint(tmp_path / "c.pt")["data"] == {}
    with pytest.raises(
        CourseError,
        match=r"The data are 2-level \(1, 5, 5\) images but the model expects 2-level "
        r"\(1, 4, 4\)",
    ):
        fit(GatedPixelCNN((1, 4, 4), channels=4, dilations=(1,)), Pairs(4), epochs=1, device="cpu")


def test_an_fp32_run_resumes_from_a_checkpoint_that_holds_a_gradient_scaler(tmp_path):
    """A checkpoint written by an fp16 run carries the scaler's state; an fp32 run (no scaler) ignores it."""
    from course_lib.checkpoint import load_checkpoint, save_checkpoint

    data = tiny_data(n=4)
    first = tiny_model()
    fit(first, data, epochs=1, batch_size=4, device="cpu", checkpoint=tmp_path / "c.pt")
    payload = load_checkpoint(tmp_path / "c.pt")
    payload["scaler"] = {"scale": 1024.0, "growth_factor": 2.0}
    extra = {k: v for k, v in payload.items() if k not in ("format", "model_name", "model_config", "state_dict")}
    save_checkpoint(tmp_path / "c.pt", first, **extra)
    history = fit(tiny_model(), data, epochs=2, batch_size=4, device="cpu", checkpoint=tmp_path / "c.pt", resume=True)
    assert history["epoch"] == [1, 2]


def test_the_tensorboard_writer_is_closed_after_training(tmp_path, monkeypatch):
    """Closing flushes the last scalars to disk; it happens when training ends, also after an error."""
    import course_lib.train as train_module

    closed = []

    class Writer:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, *args):
            pass

        def close(self):
            closed.append(self.log_dir)

    monkeypatch.setattr(train_module, "tensorboard_writer", Writer)
    fit(tiny_model(), tiny_data(n=4), epochs=1, batch_size=4, device="cpu", log_dir=tmp_path / "tb")
    assert closed == [tmp_path / "tb"]
