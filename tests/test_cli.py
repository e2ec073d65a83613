"""The CLI end to end at tiny settings: train writes its four outputs; sample and evaluate work from the checkpoint."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}


def run(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "course_lib", *args], capture_output=True, text=True, env=ENV, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run(
        "train",
        "--data",
        "shapes",
        "--limit",
        "64",
        "--epochs",
        "2",
        "--channels",
        "8",
        "--samples",
        "4",
        "--out",
        str(out),
    )
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


def test_sample_from_a_shipped_pretrained_model(tmp_path):
    """`sample --pretrained NAME` draws from a model shipped with the course; an unknown name lists the choices."""
    run("sample", "--pretrained", "binary", "--n", "2", "--out", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0
    result = run("sample", "--pretrained", "binray", check=False)
    assert result.returncode == 2
    assert "No pretrained model named 'binray'; choose one of: binary" in result.stderr
    assert "Traceback" not in result.stderr


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

    result = run(
        "train",
        "--data",
        "shapes",
        "--limit",
        "32",
        "--epochs",
        "1",
        "--channels",
        "8",
        "--samples",
        "0",
        "--fast",
        "--precision",
        "fp32",
        "--out",
        str(tmp_path),
    )
    options = json.loads((tmp_path / "metrics.json").read_text())["options"]
    want = {**fast_options("cpu", 32, 2e-3), "precision": "fp32"}
    assert {k: options[k] for k in want} == want
    assert "--fast:" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--epochs", "-1"], "argument --epochs: -1 is out of range: use a whole number at least 1"),
        (["train", "--epochs", "0"], "argument --epochs: 0 is out of range"),
        (["train", "--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
        (["train", "--batch-size", "0"], "argument --batch-size: 0 is out of range"),
        (["train", "--limit", "0"], "argument --limit: 0 is out of range"),
        (["train", "--channels", "0"], "argument --channels: 0 is out of range"),
        (["train", "--levels", "1"], "argument --levels: 1 is out of range: use a number of levels from 2 to 256"),
        (["train", "--levels", "257"], "argument --levels: 257 is out of range"),
        (["train", "--lr", "0"], "argument --lr: 0 is out of range: use a positive number"),
        (["train", "--lr", "nan"], "argument --lr: nan is out of range"),
        (["train", "--samples", "-2"], "argument --samples: -2 is out of range: use a whole number at least 0"),
        (["sample", "--checkpoint", "x.pt", "--n", "0"], "argument --n: 0 is out of range"),
        (["sample", "--checkpoint", "x.pt", "--temperature", "0"], "argument --temperature: 0 is out of range"),
        (["evaluate", "--checkpoint", "x.pt", "--limit", "-5"], "argument --limit: -5 is out of range"),
    ],
)
def test_impossible_numbers_stop_with_one_sentence(args, words, capsys):
    """Nothing is trained, sampled or written: argparse stops with exit code 2 and names the option and the range."""
    from course_lib.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_samples_0_reports_only_the_files_it_wrote(tmp_path):
    result = run(
        "train",
        "--data",
        "shapes",
        "--limit",
        "32",
        "--epochs",
        "1",
        "--channels",
        "4",
        "--samples",
        "0",
        "--out",
        str(tmp_path),
    )
    assert f"Wrote checkpoint.pt, metrics.json to {tmp_path}." in result.stdout
    assert not (tmp_path / "samples.png").exists() and not (tmp_path / "completions.png").exists()


def test_ctrl_c_says_which_epoch_the_checkpoint_holds_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """An interrupted run exits with 130 and one line; the checkpoint of the last finished epoch stays."""
    from course_lib import cli
    from course_lib.checkpoint import load_checkpoint, save_checkpoint

    def interrupted_fit(model, *args, checkpoint, **kwargs):
        save_checkpoint(checkpoint, model, epoch=1)  # two epochs done, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted_fit)
    argv = ["train", "--data", "shapes", "--limit", "16", "--epochs", "5", "--channels", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["course_lib", *argv])
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"Interrupted: {tmp_path / 'checkpoint.pt'} holds epoch 2 of 5. Resume with: "
        f"python -m course_lib {' '.join(argv)} --resume"
    ]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_ctrl_c_before_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    from course_lib import cli

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted_fit)
    argv = ["train", "--data", "shapes", "--limit", "16", "--channels", "4", "--out", str(tmp_path)]
    assert cli.main(argv) == 130
    assert "no checkpoint was written" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "sample"])
def test_an_output_folder_that_cannot_be_written_stops_before_any_work(command, tmp_path, capsys, monkeypatch):
    """A read-only --out (a student's copy of the course, a shared folder) is one sentence naming the fix,
    said before training or sampling starts, never a traceback at the end."""
    from course_lib import cli

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)  # root may write anywhere: pretend
    monkeypatch.setattr(cli, "load_dataset", lambda *a, **k: pytest.fail("trained although --out is read-only"))
    monkeypatch.setattr(cli, "pretrained", lambda *a, **k: pytest.fail("sampled although --out is read-only"))
    out = locked / "run" if command == "train" else locked / "s.png"
    args = ["train", "--data", "shapes", "--out", str(out)] if command == "train" else ["sample", "--out", str(out)]
    assert cli.main([*args] + (["--pretrained", "binary"] if command == "sample" else [])) == 2
    err = capsys.readouterr().err
    assert "Cannot write to" in err and "pass --out" in err and "Traceback" not in err
