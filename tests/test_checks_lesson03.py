"""The lesson 03 checks: every reference solution passes, and planted bugs (mutations of the solution
taken from solutions/03_training_on_gpu.py) fail with their own message."""

import re

import pytest
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson03

NOTEBOOK = SolutionCells("03_training_on_gpu")
CELLS, solution, stub = NOTEBOOK.cells, NOTEBOOK.solution, NOTEBOOK.stub


CHECKS = {
    "t03_pick_device": lesson03.check_pick_device,
    "t03_train_step": lesson03.check_train_step,
    "t03_evaluate": lesson03.check_evaluate,
    "t03_save_checkpoint": lesson03.check_save_checkpoint,
    "t03_resume": lesson03.check_resume,
}


MUTANTS = {
    # task 1: device choice
    "string instead of device": (
        "t03_pick_device",
        [('return torch.device("cuda")', 'return "cuda"')],
        "not a torch.device",
    ),
    "MPS before CUDA": (
        "t03_pick_device",
        [
            (
                "if torch.cuda.is_available():",
                "if torch.backends.mps.is_available():\n"
                "        return torch.device('mps')\n    if torch.cuda.is_available():",
            )
        ],
        "did not pick CUDA",
    ),
    "MPS ignored": ("t03_pick_device", [('return torch.device("mps")', 'return torch.device("cpu")')], "Apple MPS"),
    "explicit device ignored": (
        "t03_pick_device",
        [('if device not in (None, "auto"):', "if False:")],
        "explicit device='cpu' was ignored",
    ),
    # task 2: training step
    "loss in bits": (
        "t03_train_step",
        [("return loss.item()", "return loss.item() / math.log(2)")],
        "in bits, not nats",
    ),
    "mean over pixels": (
        "t03_train_step",
        [
            (
                "-log_prob_from_logits(logits.float(), x).mean()",
                "F.binary_cross_entropy_with_logits(logits.float(), x.float())",
            )
        ],
        "averaged the NLL over pixels",
    ),
    "sum over the batch": ("t03_train_step", [("x).mean()", "x).sum()")], "summed the NLL over the images"),
    "wrong sign": ("t03_train_step", [("loss = -log_prob", "loss = log_prob")], "wrong sign"),
    "no clipping": (
        "t03_train_step",
        [("torch.nn.utils.clip_grad_norm_(model.parameters(), clip)", "pass")],
        "not clipped",
    ),
    "clipping after the step": (
        "t03_train_step",
        [
            (
                "torch.nn.utils.clip_grad_norm_(model.parameters(), clip)\n    optimizer.step()",
                "optimizer.step()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)",
            )
        ],
        "not clipped",
    ),
    "no zero_grad": ("t03_train_step", [("optimizer.zero_grad(set_to_none=True)", "pass")], "old gradients"),
    "no autocast": ("t03_train_step", [('enabled=precision == "bf16"', "enabled=False")], "bf16 autocast"),
    "autocast device hard-coded": (
        "t03_train_step",
        [("torch.autocast(device.type,", 'torch.autocast("cuda",')],
        "bf16 autocast",
    ),
    "autocast for fp32 too": (
        "t03_train_step",
        [('enabled=precision == "bf16"', "enabled=True")],
        "precision='fp32' still ran",
    ),
    "eval mode kept": ("t03_train_step", [("model.train()", "pass")], "eval mode during the training step"),
    "no optimizer step": ("t03_train_step", [("    optimizer.step()", "    pass")], "did not change"),
    # task 3: evaluation
    "dropped last batch": (
        "t03_evaluate",
        [("shuffle=False)", "shuffle=False, drop_last=True)")],
        "last, incomplete batch was dropped",
    ),
    "mean of batch means": (
        "t03_evaluate",
        [(".double().sum().item()", ".double().mean().item()"), ("count += x.shape[0]", "count += 1")],
        "averaged the batch means",
    ),
    "nats reported as bits": (
        "t03_evaluate",
        [("nats = total / count", "nats = total / count / math.log(2)")],
        "nats reported as bits",
    ),
    "mean over pixels (evaluation)": (
        "t03_evaluate",
        [(".double().sum().item()", ".double().sum().item() / math.prod(dataset.image_shape)")],
        "mean over pixels instead of the sum",
    ),
    "bpd without ln 2": (
        "t03_evaluate",
        [("nats / (dims * math.log(2))", "nats / dims")],
        "nats per dimension, not bits",
    ),
    "bpd without D": (
        "t03_evaluate",
        [("nats / (dims * math.log(2))", "nats / math.log(2)")],
        "bits per image, not per dimension",
    ),
    "train mode": ("t03_evaluate", [("    model.eval()", "    pass")], "evaluated in training mode"),
    "no no_grad": ("t03_evaluate", [("with torch.no_grad():", "if True:")], "recorded gradients"),
    "mode not restored": ("t03_evaluate", [("model.train(was_training)", "pass")], "left in eval mode"),
    # task 4: atomic save
    "writes in place": (
        "t03_save_checkpoint",
        [("torch.save(payload, tmp)\n        os.replace(tmp, path)", "torch.save(payload, path)")],
        "torch.save wrote straight to `path`",
    ),
    "deletes first": (
        "t03_save_checkpoint",
        [("torch.save(payload, tmp)", "path.unlink(missing_ok=True)\n        torch.save(payload, tmp)")],
        "deleted the good checkpoint",
    ),
    "temporary file left": (
        "t03_save_checkpoint",
        [("tmp.unlink(missing_ok=True)", "pass")],
        "left a temporary file behind",
    ),
    "error swallowed": ("t03_save_checkpoint", [("        raise\n", "        pass\n")], "returned silently"),
    # task 5: resume
    "repeats the last epoch": ("t03_resume", [('checkpoint["epoch"] + 1', 'checkpoint["epoch"]')], "already finished"),
    "optimizer not restored": (
        "t03_resume",
        [('optimizer.load_state_dict(checkpoint["optimizer"])', "pass")],
        "optimizer state was not restored",
    ),
    "weights not restored": (
        "t03_resume",
        [('model.load_state_dict(checkpoint["state_dict"])', "pass")],
        "weights were not restored",
    ),
    "missing file raises": (
        "t03_resume",
        [("if not path.exists():", "if False:")],
        "raised FileNotFoundError",
    ),
    "missing file raises (named)": (
        "t03_resume",
        [("if not path.exists():", "if False:")],
        "(no checkpoint file at `path` yet)",
    ),
    # device names: an invalid name is named as such, not as a batch on the wrong device
    "device name PyTorch does not know": (
        "t03_pick_device",
        [('return torch.device("cuda")', 'return torch.device("gpu")')],
        "not a device name PyTorch knows",
    ),
    "'auto' passed to torch.device": (
        "t03_pick_device",
        [('if device not in (None, "auto"):', "if device is not None:")],
        "'auto' is not a device name",
    ),
    "CUDA ignored when MPS is absent": (
        "t03_pick_device",
        [("if torch.cuda.is_available():", "if torch.backends.mps.is_available():")],
        "with CUDA present (and no Apple MPS) you did not pick CUDA",
    ),
    # device handling without a GPU: the model on the meta device
    "batch not moved to the model's device": (
        "t03_train_step",
        [("x = x.to(device)", "x = x")],
        "train_step gave the model the batch on the device 'cpu', not on the model's device",
    ),
    "batch moved to a hard-coded cpu": (
        "t03_train_step",
        [("x = x.to(device)", 'x = x.to("cpu")')],
        "not on the model's device",
    ),
    "autocast on a hard-coded cpu": (
        "t03_train_step",
        [("torch.autocast(device.type,", 'torch.autocast("cpu",')],
        "torch.autocast was given the device type 'cpu'",
    ),
    "autocast without a dtype": (
        "t03_train_step",
        [("dtype=torch.bfloat16, ", "")],
        "without dtype=torch.bfloat16",
    ),
    # the order of zero_grad, backward and step
    "zero_grad between backward and step": (
        "t03_train_step",
        [("    loss.backward()\n", "    loss.backward()\n    optimizer.zero_grad()\n")],
        "the gradients were zeroed after loss.backward() and before optimizer.step()",
    ),
    "no backward": ("t03_train_step", [("    loss.backward()\n", "")], "loss.backward() was never called"),
    "step before backward": (
        "t03_train_step",
        [("    loss.backward()\n", ""), ("    optimizer.step()", "    optimizer.step()\n    loss.backward()")],
        "optimizer.step() ran before loss.backward()",
    ),
    "loss returned as a tensor": ("t03_train_step", [("return loss.item()", "return loss")], "not a Python float"),
    # evaluation: the caller's mode, the device, the numerator and the denominator, the batch size
    "always back to train mode": (
        "t03_evaluate",
        [("model.train(was_training)", "model.train()")],
        "arrived in eval mode and left in training mode",
    ),
    "batch not moved (evaluation)": (
        "t03_evaluate",
        [("x = x.to(device)", "x = x")],
        "evaluate_nll gave the model a batch on the device 'cpu'",
    ),
    "count starts at 1": (
        "t03_evaluate",
        [("total, count = 0.0, 0", "total, count = 0.0, 1")],
        "divides the summed NLL by",
    ),
    "batches counted": ("t03_evaluate", [("count += x.shape[0]", "count += 1")], "by the number of batches"),
    "total starts at 1": (
        "t03_evaluate",
        [("total, count = 0.0, 0", "total, count = 1.0, 0")],
        "the summed NLL is off by +1 nats (the count",
    ),
    "total overwritten": ("t03_evaluate", [("total +=", "total =")], "only the last batch was counted"),
    "batch means added": (
        "t03_evaluate",
        [(".double().sum().item()", ".double().mean().item()")],
        "adds one mean per batch",
    ),
    "log-likelihood summed (evaluation)": ("t03_evaluate", [("total += -log_prob", "total += log_prob")], "wrong sign"),
    "count going down": ("t03_evaluate", [("count += x.shape[0]", "count -= x.shape[0]")], "count went down"),
    "batch_size ignored (evaluation)": ("t03_evaluate", [("batch_size=batch_size, ", "")], "batch_size=8 was ignored"),
    # checkpoints: the folder of the temporary file, Ctrl-C, the original error, a path given as a string
    "temporary file in the system's temp folder": (
        "t03_save_checkpoint",
        [('tmp = path.with_name(path.name + ".tmp")', 'tmp = Path(tempfile.gettempdir()) / (path.name + ".tmp")')],
        "not to the checkpoint's folder",
    ),
    "no clean-up on Ctrl-C": (
        "t03_save_checkpoint",
        [("except BaseException:", "except Exception:")],
        "Ctrl-C (KeyboardInterrupt) in the middle of torch.save left the temporary file behind",
    ),
    "another error raised instead": (
        "t03_save_checkpoint",
        [("        raise\n", "        raise RuntimeError('saving failed')\n")],
        "did not reach the caller: it became RuntimeError",
    ),
    "clean-up that fails without a temporary file": (
        "t03_save_checkpoint",
        [("tmp.unlink(missing_ok=True)", "tmp.unlink()")],
        "the caller did not get that error but FileNotFoundError",
    ),
    "path as a string (save)": (
        "t03_save_checkpoint",
        [("    path = Path(path)\n", "")],
        "with `path` given as a string",
    ),
    # resume: weights_only, map_location, strict loading, a path given as a string
    "weights_only=False": (
        "t03_resume",
        [("weights_only=True", "weights_only=False")],
        "resume ran code hidden in a checkpoint file",
    ),
    "weights_only left out": ("t03_resume", [(", weights_only=True", "")], "without weights_only=True"),
    "map_location left out": (
        "t03_resume",
        [("map_location=next(model.parameters()).device, ", "")],
        "without map_location",
    ),
    "load_state_dict not strict": (
        "t03_resume",
        [('load_state_dict(checkpoint["state_dict"])', 'load_state_dict(checkpoint["state_dict"], strict=False)')],
        "lacks one of the model's weights",
    ),
    "path as a string (resume)": ("t03_resume", [("    path = Path(path)\n", "")], "with `path` given as a string"),
}


@pytest.mark.filterwarnings("ignore:CUDA is not available")
@pytest.mark.parametrize("bug", list(MUTANTS))
def test_planted_bug_fails_with_its_message(bug, capsys):
    grade_id, replacements, message = MUTANTS[bug]
    fn = solution(grade_id, *replacements)
    capsys.readouterr()
    with pytest.raises(CheckFailed, match=re.escape(message)):
        CHECKS[grade_id](fn)
    out = capsys.readouterr().out
    assert out.startswith("✗") and message in out and "Hint:" in out


def test_checks_leave_global_state_alone():
    """The checks use their own seeds, keep the thread setting and undo their fake hardware."""
    import torch

    originals = (torch.cuda.is_available, torch.backends.mps.is_available)
    calls = [
        (lesson03.check_pick_device, solution("t03_pick_device")),
        (lesson03.check_train_step, solution("t03_train_step")),
    ]
    assert_checks_leave_global_state_alone(calls)
    assert (torch.cuda.is_available, torch.backends.mps.is_available) == originals


def test_device_probe_leaves_torch_alone():
    """The device probe swaps torch.autocast (and bool/all/any of meta tensors) only while it runs."""
    import torch

    originals = (torch.autocast, torch.amp.autocast, torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any)
    lesson03.check_train_step(solution("t03_train_step"))
    lesson03.check_evaluate(solution("t03_evaluate"))
    assert (torch.autocast, torch.amp.autocast, torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any) == originals


def test_checkpoint_checks_restore_torch_save_and_load():
    import torch

    originals = (torch.save, torch.load)
    lesson03.check_save_checkpoint(solution("t03_save_checkpoint"))
    lesson03.check_resume(solution("t03_resume"))
    with pytest.raises(CheckFailed):
        lesson03.check_save_checkpoint(solution("t03_save_checkpoint", ("except BaseException:", "except Exception:")))
    assert (torch.save, torch.load) == originals


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_clip_value_ignored_is_named(seed, monkeypatch):
    """A clip hard-coded to 1.0 (the default in the task's signature) is told apart from no clipping at all:
    the check's clip is always far from 1.0."""
    monkeypatch.setattr(lesson03, "fresh_seed", lambda: seed)
    fn = solution(
        "t03_train_step", ("clip_grad_norm_(model.parameters(), clip)", "clip_grad_norm_(model.parameters(), 1.0)")
    )
    with pytest.raises(CheckFailed, match="the clip argument was ignored"):
        lesson03.check_train_step(fn)
