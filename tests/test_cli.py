"""The CLI end to end at tiny settings: train writes its four outputs; sample and evaluate work from the checkpoint."""
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "course_lib", *args], capture_output=True, text=True, env=ENV,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run("train", "--data", "shapes", "--limit", "64", "--epochs", "2", "--channels", "8",
                 "--samples", "4", "--out", str(out))
    return out, result


def test_train_writes_checkpoint_samples_completions_and_metrics(trained):
    out, result = trained
    for name in ("checkpoint.pt", "samples.png", "completions.png", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test_images"] == 16
    for key in ("test_nats_per_image", "test_bits_per_dim", "baseline_test_nats_per_image", "wall_seconds", "device"):
        assert key in metrics
    assert "epoch 2/2" in result.stdout


def test_sample_and_evaluate_from_the_checkpoint(trained, tmp_path):
    out, _ = trained
    run("sample", "--checkpoint", str(out / "checkpoint.pt"), "--n", "2", "--out", str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 0
    result = run("evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--limit", "20")
    report = json.loads(result.stdout)
    assert report["data"] == "shapes" and report["n_images"] == 20


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_every_subcommand_has_help(command):
    assert "usage" in run(command, "--help").stdout


def test_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    result = run("sample", "--checkpoint", str(bad), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Checkpoint") and "Traceback" not in result.stderr


def test_fast_flag_applies_the_device_fast_path_and_explicit_flags_win(tmp_path):
    from course_lib.train import fast_options
    result = run("train", "--data", "shapes", "--limit", "32", "--epochs", "1", "--channels", "8", "--samples", "0",
                 "--fast", "--precision", "fp32", "--out", str(tmp_path))
    options = json.loads((tmp_path / "metrics.json").read_text())["options"]
    want = {**fast_options("cpu", 32, 2e-3), "precision": "fp32"}
    assert {k: options[k] for k in want} == want
    assert "--fast:" in result.stdout
