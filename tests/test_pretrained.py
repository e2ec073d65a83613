"""The shipped pretrained models: each loads, rebuilds its own model and scores the test NLL its record
states; the retraining script writes exactly what the loader reads; unknown names fail clearly."""

import json
from pathlib import Path

import pytest
import torch

import course_lib
from course_lib import CourseError, TrainingDiverged, evaluate, load_dataset, zoo
from course_lib.zoo import available, pretrained, record
from tools import pretrain

ROOT = Path(__file__).resolve().parents[1]

SHIPPED = available()


def test_every_recipe_is_shipped_and_small():
    """`make pretrained` and the repository agree, and the weights stay within 10 MB in all."""
    assert SHIPPED == sorted(pretrain.RECIPES)
    total = sum((zoo.WEIGHTS / f"{name}.pt").stat().st_size for name in SHIPPED)
    assert total <= 10 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_recorded_test_nll(name):
    """Loading NAME and scoring its recipe's test split gives the recorded NLL to 0.01 nats/image."""
    rec = record(name)
    model = pretrained(name)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert course_lib.count_parameters(model) == rec["parameters"]
    test = load_dataset(split="test", seed=rec["train"]["seed"], **rec["data"])
    result = evaluate(model, test, device="cpu")
    assert result["n_images"] == rec["test_images"] == len(test)
    assert result["nats"] == pytest.approx(rec["test_nats_per_image"], abs=0.01)


@pytest.mark.parametrize("name", SHIPPED)
def test_record_states_where_and_how_it_was_trained(name):
    """The record is the recipe `make pretrained` would run today, plus the machine, time and curve."""
    rec, recipe = record(name), json.loads(json.dumps(pretrain.RECIPES[name]))
    assert (rec["about"], rec["data"], rec["model"]) == (recipe["about"], recipe["data"], recipe["model"])
    assert {k: rec["train"][k] for k in recipe["train"]} == recipe["train"]
    assert rec["train"]["seed"] == pretrain.SEED
    assert rec["machine"]["cpu"] and rec["machine"]["torch"] and rec["train_seconds"] > 0
    assert len(rec["history"]["test_nats"]) == recipe["train"]["epochs"]


def test_the_readme_table_is_generated_from_the_records():
    """The README quotes every shipped model's figures as its record states them (python -m tools.pretrain --table)."""
    assert pretrain.readme_table() in (ROOT / "README.md").read_text()


def test_unknown_name_names_the_choices():
    with pytest.raises(CourseError, match=r"No pretrained model named 'bianry'; choose one of: .*binary"):
        pretrained("bianry")


def test_retraining_writes_what_the_loader_reads(tmp_path, monkeypatch):
    """A tiny recipe through tools/pretrain.py: fp16 weights, a record whose NLL the loaded model reproduces."""
    tiny = dict(
        about="a tiny test recipe",
        data=dict(name="digits", levels=2, limit=48),
        model=dict(name="gated", channels=4, dilations=(1,)),
        train=dict(epochs=2, batch_size=16, lr=1e-3),
    )
    monkeypatch.setattr(pretrain, "RECIPES", {"tiny": tiny})
    monkeypatch.setattr(pretrain, "ROOT", tmp_path)
    monkeypatch.setattr(pretrain, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(zoo, "WEIGHTS", tmp_path / "weights")
    rec = pretrain.train("tiny", device="cpu")
    assert available() == ["tiny"]
    payload = torch.load(tmp_path / "weights" / "tiny.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())
    assert record("tiny") == json.loads(json.dumps(rec))
    test = load_dataset(split="test", seed=0, **tiny["data"])
    assert evaluate(pretrained("tiny"), test)["nats"] == pytest.approx(rec["test_nats_per_image"], abs=1e-6)
    assert len(rec["history"]["test_nats"]) == 2


def test_a_failed_run_leaves_the_shipped_weights_alone(tmp_path, monkeypatch):
    """Never overwrite a good checkpoint with a failed run: a run that diverges writes nothing."""
    tiny = dict(
        about="diverges",
        data=dict(name="digits", levels=2, limit=32),
        model=dict(name="gated", channels=4, dilations=(1,)),
        train=dict(epochs=1, batch_size=16, lr=float("inf")),
    )
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "tiny.pt").write_bytes(b"good")
    monkeypatch.setattr(pretrain, "RECIPES", {"tiny": tiny})
    monkeypatch.setattr(pretrain, "ROOT", tmp_path)
    monkeypatch.setattr(pretrain, "WEIGHTS", weights)
    with pytest.raises(TrainingDiverged):
        pretrain.train("tiny", device="cpu")
    assert (weights / "tiny.pt").read_bytes() == b"good"
    assert not (weights / "tiny.json").exists()


def test_retrain_trains_the_recorded_recipe_and_leaves_the_shipped_files_alone(tmp_path, monkeypatch):
    """A lesson's TRAIN_YOUR_OWN switch (zoo.retrain): the recipe in the record is trained again from scratch
    (same seed, so the same weights as the shipped run before rounding to fp16); nothing shipped changes."""
    tiny = dict(
        about="a tiny test recipe",
        data=dict(name="digits", levels=2, limit=32),
        model=dict(name="gated", channels=4, dilations=(1,)),
        train=dict(epochs=1, batch_size=16, lr=1e-3),
    )
    weights = tmp_path / "weights"
    monkeypatch.setattr(pretrain, "RECIPES", {"tiny": tiny})
    monkeypatch.setattr(pretrain, "ROOT", tmp_path)
    monkeypatch.setattr(pretrain, "WEIGHTS", weights)
    monkeypatch.setattr(zoo, "WEIGHTS", weights)
    pretrain.train("tiny", device="cpu")
    shipped = {p.name: p.read_bytes() for p in weights.iterdir()}
    model = zoo.retrain("tiny", device="cpu")
    assert not model.training and model.config == pretrained("tiny").config
    for name, tensor in pretrained("tiny").state_dict().items():
        assert torch.allclose(model.state_dict()[name], tensor, atol=1e-2), name  # fp16 rounding apart
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == shipped
