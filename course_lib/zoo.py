"""The model zoo: models shipped with the course, trained for longer than a lesson can afford.

Each name has two files in course_lib/weights/: NAME.pt holds fp16 weights and the configuration that
rebuilds the model (a `save_checkpoint` file, loaded weights-only); NAME.json records how it was made
(recipe, seed, data, training time, machine, learning curve) and the test NLL of the shipped weights.
`make pretrained` (tools/pretrain.py) retrains every one of them from scratch; `retrain(name)` trains one
recipe in a lesson ("train your own") without touching the shipped files.
"""

import json
from pathlib import Path

from .checkpoint import load_checkpoint
from .data import load_dataset
from .device import cpu_has_bf16, pick_device
from .errors import CourseError
from .models import build_model
from .train import fit, seed_everything

WEIGHTS = Path(__file__).parent / "weights"


def available() -> list[str]:
    """Names of the shipped pretrained models, sorted."""
    return sorted(p.stem for p in WEIGHTS.glob("*.pt") if p.with_suffix(".json").is_file())


def record(name: str) -> dict:
    """How the pretrained model `name` was trained and what it scores (the NAME.json record)."""
    _check_name(name)
    return json.loads((WEIGHTS / f"{name}.json").read_text())


def pretrained(name: str, device="cpu"):
    """Rebuild the pretrained model `name` in float32 on `device`, in eval mode.

    The weights are stored in fp16 (half the size); the model computes in float32 as if trained here.
    """
    _check_name(name)
    payload = load_checkpoint(WEIGHTS / f"{name}.pt")
    model = build_model(payload["model_name"], **payload["model_config"])
    model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    return model.to(device).eval()


def _check_name(name):
    names = available()
    if name not in names:
        raise CourseError(
            f"No pretrained model named {name!r}; choose one of: {', '.join(names) or '(none shipped)'}, "
            "or run `make pretrained` to train them."
        )


def train_recipe(recipe, *, seed=0, device=None, checkpoint=None, resume=False, on_epoch_end=None):
    """Train a recipe {"data": load_dataset options, "model": {"name", ...}, "train": fit options} from
    scratch, initial weights included (seeded): its training split, its test split scored after every epoch,
    bf16 autocast where the device computes it natively (a CUDA GPU or a CPU with bf16 units), fp32 elsewhere.
    Returns (model, history, precision)."""
    train_data = load_dataset(split="train", seed=seed, **recipe["data"])
    test_data = load_dataset(split="test", seed=seed, **recipe["data"])
    config = dict(recipe["model"])
    seed_everything(seed)  # the initial weights too come from the recipe's seed
    model = build_model(config.pop("name"), image_shape=train_data.image_shape, levels=train_data.levels, **config)
    device = pick_device(device)
    precision = "bf16" if (device.type == "cpu" and cpu_has_bf16()) or device.type == "cuda" else "fp32"
    history = fit(
        model,
        train_data,
        test_data,
        device=device,
        checkpoint=checkpoint,
        resume=resume,
        seed=seed,
        precision=precision,
        on_epoch_end=on_epoch_end,
        **recipe["train"],
    )
    return model, history, precision


def retrain(name: str, device=None):
    """Train the recipe of pretrained model `name` from scratch, as its record states it (data, model,
    epochs, batch size, learning rate, seed), and return the model in float32 and eval mode: a lesson's
    "train your own". The shipped files stay as they are."""
    rec = record(name)
    options = {k: rec["train"][k] for k in ("epochs", "batch_size", "lr")}
    recipe = dict(data=rec["data"], model=rec["model"], train=options)
    model, _, _ = train_recipe(recipe, seed=rec["train"]["seed"], device=device)
    return model.float().cpu().eval()
