"""Lesson 06 quotes measurements that tools/study_levels.py made and committed in notebooks/results/: the
files hold exactly the runs the script defines (same data, model, training options and seeds), every
seed-0 model the lesson samples from rebuilds with its run's configuration, and the README's table is the
one generated from the files."""

import json
from pathlib import Path

import pytest
import torch

from course_lib import load_model
from course_lib.masks import cut_channel_links
from tools import study_levels

ROOT = Path(__file__).resolve().parents[1]

STUDIES = ("heads", "data", "colour")


def normalised(value):
    return json.loads(json.dumps(value))  # tuples become lists, as in the files


@pytest.mark.parametrize("name", STUDIES)
def test_results_hold_exactly_the_runs_the_script_defines(name):
    record = json.loads((study_levels.RESULTS / f"06_{name}.json").read_text())
    defined = {run["key"]: run for run in study_levels.runs(name)}
    assert set(record["runs"]) == set(defined), "rerun `python -m tools.study_levels` after changing a study"
    for key, run in defined.items():
        stored = record["runs"][key]
        for field in ("data", "model", "train", "seed"):
            assert stored[field] == normalised(run[field]), (key, field)
        assert stored["test_images"] == 1000 and 0 < stored["test_bits_per_dim"] < 8
    assert record["script"] == "tools/study_levels.py" and record["machine"]["cpu"]


@pytest.mark.parametrize(
    "path, head, shape, levels",
    [
        ("06_heads_softmax.pt", "softmax", (1, 28, 28), 256),
        ("06_heads_logistic.pt", "logistic", (1, 28, 28), 256),
        ("06_colour_ordered.pt", "softmax", (3, 28, 28), 4),
        ("06_colour_independent.pt", "softmax", (3, 28, 28), 4),
    ],
)
def test_seed0_models_rebuild_with_their_runs_configuration(path, head, shape, levels):
    model = load_model(study_levels.RESULTS / path)
    assert model.head == head and model.image_shape == shape and model.levels == levels
    x = torch.randint(0, levels, (2, *shape))
    assert torch.isfinite(model.float().log_prob(x)).all()


def test_independent_colour_model_needs_its_masks_cut_again():
    """Masks are not saved: the loaded model is ordered until cut_channel_links is applied, as the lesson does."""
    model = load_model(study_levels.RESULTS / "06_colour_independent.pt").float()
    x = torch.randint(0, 4, (1, 3, 28, 28))
    before = model(x)
    x2 = x.clone()
    x2[0, 0, 5, 5] = (x2[0, 0, 5, 5] + 1) % 4  # change the red of pixel (5, 5)
    assert not torch.equal(model(x2)[:, :, 1, 5, 5], before[:, :, 1, 5, 5])  # green sees red: ordered
    cut_channel_links(model)
    assert torch.equal(model(x2)[:, :, 1, 5, 5], model(x)[:, :, 1, 5, 5])  # cut: green ignores this red


def test_readme_quotes_the_generated_table():
    assert study_levels.readme_table() in (ROOT / "README.md").read_text(), "python -m tools.study_levels --table"
