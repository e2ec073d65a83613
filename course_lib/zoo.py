"""The model zoo: models shipped with the course, trained for longer than a lesson can afford.

Each name has two files in course_lib/weights/: NAME.pt holds fp16 weights and the configuration that
rebuilds the model (a `save_checkpoint` file, loaded weights-only); NAME.json records how it was made
(recipe, seed, data, training time, machine, learning curve) and the test NLL of the shipped weights.
`make pretrained` (tools/pretrain.py) retrains every one of them from scratch.
"""

import json
from pathlib import Path

from .checkpoint import load_checkpoint
from .errors import CourseError
from .models import build_model

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
