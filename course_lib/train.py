"""Training: one `fit(model, train_data, test_data, ...)` for CPU, CUDA and Apple MPS.

Per epoch: shuffle with a seed derived from (seed, epoch), take gradient steps on the mean NLL in
nats per image, evaluate every test image, then write the checkpoint atomically. Because every
epoch re-seeds itself, a run resumed from its last checkpoint follows exactly the same path as one
that was never interrupted (on the CPU).
"""

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import check_same_architecture, load_checkpoint, save_checkpoint
from .config import epoch_seed
from .device import cpu_has_bf16, pick_device
from .errors import CourseError, TrainingDiverged
from .likelihood import bits_per_dim, evaluate
from .models import log_likelihood

PRECISIONS = ("fp32", "bf16", "fp16")


def seed_everything(seed: int):
    """Seed Python, NumPy (when present) and torch (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


@dataclass
class TrainConfig:
    """Everything that shapes a training run (stored in the checkpoint)."""

    epochs: int = 10
    batch_size: int = 32  # the global batch: split evenly over the processes of a torchrun job
    lr: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" (with linear warm-up) or "constant"
    warmup_steps: int = 0
    clip: float | None = 1.0  # max gradient norm, None to disable
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "fp16" (autocast + gradient scaler; CUDA or CPU)
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int = 256
    check_every: int = 20  # steps between NaN checks (each check syncs the GPU)


def fast_options(device, batch_size: int = 32, lr: float = 2e-3) -> dict:
    """TrainConfig fields of the fast training path on `device` (what `--fast` picks).

    CUDA: bf16 autocast (fp16 with a gradient scaler where the card lacks bf16), channels_last,
    torch.compile, and a 4x larger batch with the learning rate scaled by sqrt(4) = 2 (a GPU is
    underused by small batches; Adam tolerates the square-root rule). A CPU with native bf16: bf16
    autocast, nothing else (compile and channels_last gain little there). Other devices: unchanged.
    """
    device = torch.device(device)
    if device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return dict(precision=precision, channels_last=True, compile=True, batch_size=4 * batch_size, lr=2 * lr)
    if device.type == "cpu" and cpu_has_bf16():
        return dict(precision="bf16", batch_size=batch_size, lr=lr)
    return dict(batch_size=batch_size, lr=lr)


DATA_FIELDS = ("name", "levels", "binarize", "image_shape")


def describe_data(dataset) -> dict:
    """What a checkpoint records of its training data: whichever of DATA_FIELDS the data set has."""
    return {k: getattr(dataset, k) for k in DATA_FIELDS if hasattr(dataset, k)}


def check_data_fits(model, dataset):
    """Training needs (x, y) pairs with x: (C, H, W) integer levels that fit the model; the image shape is read
    from the first pair, and `levels` is compared when the data set states it. Raises CourseError otherwise."""
    if len(dataset) == 0:
        raise CourseError("The training set is empty; check the data set name, split and limit.")
    shape = tuple(dataset[0][0].shape)
    levels = getattr(dataset, "levels", model.levels)
    if shape != model.image_shape or levels != model.levels:
        raise CourseError(
            f"The data are {levels}-level {shape} images but the model expects {model.levels}-level "
            f"{model.image_shape}; build the model for this data."
        )


def tensorboard_writer(log_dir):
    """A TensorBoard SummaryWriter into `log_dir`, or a CourseError saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CourseError(
            "Logging to TensorBoard needs the tensorboard package; install it with "
            "pip install 'pixelcnn-course[tensorboard]' or train without log_dir."
        ) from None
    return SummaryWriter(log_dir)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at `step`: linear warm-up, then cosine decay to zero (or constant)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Holds model, data, optimizer and settings; `run()` trains and returns the history dict."""

    def __init__(
        self,
        model,
        train_data,
        test_data=None,
        config=None,
        *,
        device=None,
        checkpoint=None,
        log_dir=None,
        progress=None,
        on_epoch_end=None,
    ):
        self.cfg = config or TrainConfig()
        if self.cfg.precision not in PRECISIONS:
            raise CourseError(f"Unknown precision {self.cfg.precision!r}; choose one of: {', '.join(PRECISIONS)}.")
        if self.cfg.schedule not in ("cosine", "constant"):
            raise CourseError(f"Unknown schedule {self.cfg.schedule!r}; use 'cosine' or 'constant'.")
        check_data_fits(model, train_data)
        self.rank, self.world, _ = distributed.world()
        self.owns_group = self.world > 1 and not distributed.in_group()  # then run() leaves it at the end
        self.device = distributed.setup(pick_device(device))
        if self.cfg.precision == "fp16" and self.device.type not in ("cuda", "cpu"):
            raise CourseError(
                f"precision='fp16' needs a CUDA GPU or the CPU (not {self.device.type}); use 'bf16' or 'fp32' here."
            )
        if self.cfg.batch_size % self.world:
            raise CourseError(
                f"batch_size={self.cfg.batch_size} does not split evenly over {self.world} processes; "
                f"choose a multiple of {self.world}."
            )
        self.local_batch = self.cfg.batch_size // self.world
        self.model = model.to(self.device)
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.network = self.model  # what runs the forward pass: the model, wrapped in DDP and/or compiled
        if self.world > 1:  # averages gradients over the processes during backward()
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        if self.cfg.compile:
            self.network = torch.compile(self.network)
        self.train_data, self.test_data = train_data, test_data
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.log_dir, self.on_epoch_end = log_dir, on_epoch_end
        self.progress = (os.environ.get("TQDM_DISABLE", "") in ("", "0")) if progress is None else progress
        self.progress = self.progress and self.rank == 0
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        # fp16 needs a gradient scaler (CUDA's or the CPU's); bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(self.device.type) if self.cfg.precision == "fp16" else None
        self.history = {k: [] for k in ("epoch", "train_nats", "test_nats", "test_bpd", "lr", "seconds")}
        self.start_epoch = 0
        self.steps_per_epoch = math.ceil(math.ceil(len(train_data) / self.world) / self.local_batch)

    # -- pieces ---------------------------------------------------------------------------------
    def autocast(self):
        """Autocast context for the chosen precision (a no-op for fp32)."""
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def loss(self, x, y):
        """Mean negative log-likelihood in nats per image of one batch."""
        labels = y if self.model.num_classes else None
        with self.autocast():  # the network runs in the chosen precision, the likelihood in float32
            return -log_likelihood(self.network, x, labels).mean()

    def step(self, x, y, lr):
        """One optimisation step; returns the (detached) loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach()

    def loader(self, epoch):
        """This process's training batches of `epoch`, shuffled by a permutation seeded from (seed, epoch)."""
        sampler = distributed.ShardSampler(len(self.train_data), self.cfg.seed, epoch, self.rank, self.world)
        return DataLoader(
            self.train_data,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _check_finite(self, total, count, epoch, step):
        total = distributed.all_reduce_sum(total.item(), device=self.device)[0]  # every process stops together
        if not math.isfinite(total):
            where = f" (the last good checkpoint {self.checkpoint} is untouched)" if self.checkpoint else ""
            raise TrainingDiverged(
                f"The training loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; "
                f"lower the learning rate or turn on gradient clipping{where}."
            )

    # -- checkpoints ----------------------------------------------------------------------------
    def resume(self):
        """Restore model, optimizer and history from `self.checkpoint` (if it exists)."""
        if not (self.checkpoint and self.checkpoint.exists()):
            return
        payload = load_checkpoint(self.checkpoint, map_location=self.device)
        check_same_architecture(self.model, payload, self.checkpoint)
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.history = payload["history"]
        self.start_epoch = payload["epoch"] + 1

    def save(self, epoch):
        """Write the checkpoint (rank 0 only; the others wait until it is on disk)."""
        if self.rank == 0:
            save_checkpoint(
                self.checkpoint,
                self.model,
                optimizer=self.optimizer.state_dict(),
                epoch=epoch,
                history=self.history,
                train_config=asdict(self.cfg),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                data=describe_data(self.train_data),
            )
        if self.world > 1:
            torch.distributed.barrier()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, resume=False):
        """Train for the configured epochs (continuing after the checkpoint's epoch if `resume`)."""
        if resume:
            self.resume()
        writer = tensorboard_writer(self.log_dir) if self.log_dir and self.rank == 0 else None
        try:
            self._epochs(writer)
        finally:
            if writer:
                writer.close()
            if self.owns_group:
                distributed.teardown()
        return self.history

    def _epochs(self, writer):
        total_steps = self.cfg.epochs * self.steps_per_epoch
        for epoch in range(self.start_epoch, self.cfg.epochs):
            torch.manual_seed(epoch_seed(self.cfg.seed, epoch))  # dynamic binarization draws from this
            self.model.train()
            start, total, count = time.perf_counter(), torch.zeros((), device=self.device), 0
            bar = tqdm(
                self.loader(epoch),
                total=self.steps_per_epoch,
                desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                disable=not self.progress,
                leave=False,
            )
            for i, (x, y) in enumerate(bar):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if self.cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = learning_rate(self.cfg, epoch * self.steps_per_epoch + i, total_steps)
                loss = self.step(x, y, lr)
                total, count = total + loss * x.shape[0], count + x.shape[0]
                if (i + 1) % self.cfg.check_every == 0:
                    self._check_finite(total, count, epoch, i)
                    bar.set_postfix(nats=f"{total.item() / count:.2f}")
            self._check_finite(total, count, epoch, i)
            total, count = distributed.all_reduce_sum(total.item(), count, device=self.device)
            self._record(epoch, total / count, lr, time.perf_counter() - start, writer)
            if self.checkpoint:
                self.save(epoch)
            if self.on_epoch_end:
                self.on_epoch_end(epoch, self.history)

    def _record(self, epoch, train_nats, lr, seconds, writer):
        test = None
        if self.test_data:
            test = evaluate(
                self.model, self.test_data, self.cfg.eval_batch_size, self.device, distributed=self.world > 1
            )
        if test and not math.isfinite(test["nats"]):
            raise TrainingDiverged(
                f"The test NLL became NaN at epoch {epoch + 1}; lower the learning rate "
                f"(the last good checkpoint is untouched)."
            )
        h = self.history
        h["epoch"].append(epoch + 1)
        h["train_nats"].append(train_nats)
        h["test_nats"].append(test["nats"] if test else None)
        h["test_bpd"].append(test["bpd"] if test else None)
        h["lr"].append(lr)
        h["seconds"].append(seconds)
        if writer:
            dims = math.prod(self.model.image_shape)
            writer.add_scalar("train/bpd", bits_per_dim(train_nats, dims), epoch + 1)
            if test:
                writer.add_scalar("test/bpd", test["bpd"], epoch + 1)
                writer.add_scalar("test/nats", test["nats"], epoch + 1)


def fit(
    model,
    train_data,
    test_data=None,
    *,
    device=None,
    checkpoint=None,
    resume=False,
    log_dir=None,
    progress=None,
    on_epoch_end=None,
    **config,
):
    """Train `model` on `train_data` and return the history dict
    {"epoch", "train_nats", "test_nats", "test_bpd", "lr", "seconds"} (one entry per epoch).

    config: any TrainConfig field (epochs, batch_size, lr, precision, channels_last, compile, clip, ...).
    checkpoint: path written atomically after every epoch; resume=True continues from it.
    on_epoch_end(epoch, history): called after each epoch's checkpoint is written.
    """
    unknown = set(config) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise CourseError(f"Unknown training option(s) {sorted(unknown)}; valid ones are the fields of TrainConfig.")
    trainer = Trainer(
        model,
        train_data,
        test_data,
        TrainConfig(**config),
        device=device,
        checkpoint=checkpoint,
        log_dir=log_dir,
        progress=progress,
        on_epoch_end=on_epoch_end,
    )
    return trainer.run(resume=resume)
