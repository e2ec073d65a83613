"""The lesson 03 checks: every reference solution passes, and planted bugs (mutations of the solution
taken from solutions/03_training_on_gpu.py) fail with their own message."""

import re

import pytest
from solution_cells import SolutionCells

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
        "overwrote the good checkpoint",
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
    "missing file raises": ("t03_resume", [("if not path.exists():", "if False:")], "raised FileNotFoundError"),
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
    """The checks use their own seeds and undo their fake hardware."""
    import torch

    originals = (torch.cuda.is_available, torch.backends.mps.is_available)
    pick_device, train_step = solution("t03_pick_device"), solution("t03_train_step")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lesson03.check_pick_device(pick_device)
    lesson03.check_train_step(train_step)
    assert torch.equal(torch.rand(3), expected)
    assert (torch.cuda.is_available, torch.backends.mps.is_available) == originals
