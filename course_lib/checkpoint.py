"""Checkpoints that rebuild their own model, load with `torch.load(weights_only=True)`, and are
written atomically (a crash mid-write never leaves a half file where a good one was)."""

import os
import tempfile
from pathlib import Path

import torch

from .errors import CheckpointError
from .models import build_model, model_name

FORMAT = "pixelcnn-course/1"


def save_checkpoint(path, model, **extra):
    """Write model weights + the configuration that rebuilds it (+ `extra` entries) to `path` atomically.

    The file is written next to its destination and moved into place with os.replace, so readers
    only ever see the old complete file or the new complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_name": model_name(model),
        "model_config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes private files; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint dict safely (weights_only=True); raise CheckpointError if it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}; train a model first (python -m course_lib train) or fix the path."
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"Checkpoint {path} is corrupted or incomplete ({type(err).__name__}); "
            f"delete it and train again, or load another file."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pixelcnn-course checkpoint; save models with save_checkpoint().")
    return payload


def load_model(path, map_location="cpu"):
    """Rebuild the model stored in a checkpoint and load its weights. Returns the model in eval mode."""
    payload = load_checkpoint(path, map_location)
    model = build_model(payload["model_name"], **payload["model_config"])
    _load_weights(model, payload, path)
    return model.eval()


def load_into(model, path, map_location="cpu") -> dict:
    """Load a checkpoint's weights into an existing `model` after checking it is the same architecture.
    Returns the whole checkpoint dict (optimizer state, epoch, history when present)."""
    payload = load_checkpoint(path, map_location)
    check_same_architecture(model, payload, path)
    _load_weights(model, payload, path)
    return payload


def check_same_architecture(model, payload, path):
    """Raise CheckpointError unless `payload` was saved from a model of the same class and configuration."""
    theirs = (payload["model_name"], _normalise(payload["model_config"]))
    ours = (model_name(model), _normalise(model.config))
    if theirs != ours:
        raise CheckpointError(
            f"Checkpoint {path} holds a {theirs[0]} model with {theirs[1]}, but this model is a "
            f"{ours[0]} with {ours[1]}; load it with load_model(path) or use a matching checkpoint."
        )


def _normalise(config):
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in sorted(config.items())}


def _load_weights(model, payload, path):
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise CheckpointError(
            f"Checkpoint {path} does not match the model it describes ({first}); "
            f"it was probably written by another version, so train again."
        ) from None
