"""The lesson 05 checks: every reference solution passes, and planted bugs (mutations of the solution
taken from solutions/05_fine_tuning.py) fail with their own message."""

import re

import pytest
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson05

TASKS = ["t05_fine_tune", "t05_class_log_likelihoods", "t05_bayes"]
NOTEBOOK = SolutionCells("05_fine_tuning", TASKS)
CELLS, solution, stub = NOTEBOOK.cells, NOTEBOOK.solution, NOTEBOOK.stub


CHECKS = {
    "t05_fine_tune": lesson05.check_fine_tune,
    "t05_class_log_likelihoods": lesson05.check_class_log_likelihoods,
    "t05_bayes": lesson05.check_bayes,
}


ADAM = "optimizer = torch.optim.Adam(trainable, lr=lr)"
STEP = (
    "            optimizer.zero_grad(set_to_none=True)\n"
    "            loss = -log_prob_from_logits(model(x, labels), x).mean()\n"
    "            loss.backward()\n"
    "            optimizer.step()\n"
)
MUTANTS = {
    # task 1: fine-tuning with frozen layers
    "nothing frozen": (
        "t05_fine_tune",
        [
            ("p.requires_grad_(learns)", "pass"),
            ("        if learns:\n            trainable.append(p)", "        trainable.append(p)"),
        ],
        "layers meant to be frozen still changed",
    ),
    "module.requires_grad attribute": (
        "t05_fine_tune",
        [
            ("p.requires_grad_(learns)", "pass"),
            (
                ADAM,
                "for module in model.modules():\n        module.requires_grad = False\n"
                "    optimizer = torch.optim.Adam(model.parameters(), lr=lr)",
            ),
        ],
        "requires_grad is still True",
    ),
    "optimizer over everything, stale gradients": (
        "t05_fine_tune",
        [
            (ADAM, "optimizer = torch.optim.Adam(model.parameters(), lr=lr)"),
            (
                STEP,
                STEP.replace("            optimizer.zero_grad(set_to_none=True)\n", "")
                + "            optimizer.zero_grad(set_to_none=True)\n",
            ),
        ],
        "although their requires_grad is False",
    ),
    "prefix without dot boundary": (
        "t05_fine_tune",
        [('name.startswith(prefix + ".")', "name.startswith(prefix)")],
        "also matched",
    ),
    "frozen still require gradients": (
        "t05_fine_tune",
        [("p.requires_grad_(learns)", "pass")],
        "still require gradients",
    ),
    "labels not passed": ("t05_fine_tune", [("model(x, labels)", "model(x)")], "pass labels"),
    "no optimizer step": ("t05_fine_tune", [("            optimizer.step()\n", "")], "meant to train did not change"),
    "wrong sign": (
        "t05_fine_tune",
        [("loss = -log_prob_from_logits", "loss = log_prob_from_logits")],
        "made the NLL of the training images worse",
    ),
    "losses in bits": (
        "t05_fine_tune",
        [("total += loss.item() * x.shape[0]", "total += loss.item() / math.log(2) * x.shape[0]")],
        "in bits, not nats",
    ),
    "mean over pixels": (
        "t05_fine_tune",
        [
            (
                "loss = -log_prob_from_logits(model(x, labels), x).mean()",
                "loss = -log_prob_from_logits(model(x, labels), x).mean() / x[0].numel()",
            )
        ],
        "averaged over the pixels",
    ),
    # hyperparameters silently ignored: lr, seed, shuffling, batch size; the mode the model arrives in
    "lr ignored": ("t05_fine_tune", [(ADAM, "optimizer = torch.optim.Adam(trainable)")], "with lr=0 the weights"),
    "eval mode kept": ("t05_fine_tune", [("    model.train()\n", "")], "fine_tune trained with the model in eval mode"),
    "seed ignored": ("t05_fine_tune", [("manual_seed(seed + epoch)", "manual_seed(epoch)")], "the seed argument"),
    "same shuffle every epoch": (
        "t05_fine_tune",
        [("manual_seed(seed + epoch)", "manual_seed(seed)")],
        "every epoch shuffled the images in the same order",
    ),
    "seed minus epoch": (
        "t05_fine_tune",
        [("manual_seed(seed + epoch)", "manual_seed(seed - epoch)")],
        "epoch 1 did not read the images in the order",
    ),
    "not shuffled": ("t05_fine_tune", [("shuffle=True", "shuffle=False")], "the images were not shuffled"),
    "global generator": (
        "t05_fine_tune",
        [(", generator=g)", ")")],
        "the seed argument does not decide the shuffling",
    ),
    "batch_size ignored": ("t05_fine_tune", [("batch_size=batch_size, ", "")], "batch_size=8 was ignored"),
    "shuffled without reading the dataset": (
        "t05_fine_tune",
        [
            (
                "DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)",
                "DataLoader(torch.utils.data.TensorDataset(dataset.images, dataset.labels), "
                "batch_size=batch_size, shuffle=True)",
            )
        ],
        "the same seed did not reproduce the same training run",
    ),
    # the gradients: never cleared, or cleared only after the step
    "gradients never cleared": (
        "t05_fine_tune",
        [("            optimizer.zero_grad(set_to_none=True)\n", "")],
        "the gradients were never cleared",
    ),
    "stale gradients in the first step": (
        "t05_fine_tune",
        [
            ("            optimizer.zero_grad(set_to_none=True)\n", ""),
            ("            optimizer.step()\n", "            optimizer.step()\n            optimizer.zero_grad()\n"),
        ],
        "reached the first step",
    ),
    # the device: images and labels on the model's device
    "batch not moved": ("t05_fine_tune", [("x = x.to(device)", "x = x")], "fine_tune gave the model a batch"),
    "labels not moved": ("t05_fine_tune", [("labels = y.to(device) if", "labels = y if")], "on the device 'cpu'"),
    # the epoch's loss: numerator and denominator
    "loss tensors kept": ("t05_fine_tune", [("loss.item() * x", "loss * x")], "tensors, not Python floats"),
    "batch means not weighted": (
        "t05_fine_tune",
        [("total += loss.item() * x.shape[0]", "total += loss.item()")],
        "without weighting it by the number of images",
    ),
    "divided by the batch size": (
        "t05_fine_tune",
        [("loss.item() * x.shape[0]", "loss.item() / x.shape[0]")],
        "divided by the batch size instead of multiplied",
    ),
    "batches counted": ("t05_fine_tune", [("count += x.shape[0]", "count += 1")], "by the number of batches"),
    "count starts at 1": (
        "t05_fine_tune",
        [("total, count = 0.0, 0", "total, count = 0.0, 1")],
        "divided by 23, not by the number of images (22)",
    ),
    "total starts at 1": (
        "t05_fine_tune",
        [("total, count = 0.0, 0", "total, count = 1.0, 0")],
        "off by +0.04545 nats in every epoch",
    ),
    "last batch's loss": (
        "t05_fine_tune",
        [("losses.append(total / count)", "losses.append(loss.item())")],
        "the loss of its last batch",
    ),
    "loss summed over the batch": (
        "t05_fine_tune",
        [("x).mean()", "x).sum()")],
        "the loss of a batch was summed over its images",
    ),
    "nothing added": ("t05_fine_tune", [("            total += loss.item() * x.shape[0]\n", "")], "all 0"),
    "negative losses": ("t05_fine_tune", [("total +=", "total -=")], "the returned losses are negative"),
    # task 2: class-conditional log-likelihoods
    "train mode": ("t05_class_log_likelihoods", [("    model.eval()\n", "")], "in train mode"),
    "no no_grad": ("t05_class_log_likelihoods", [("with torch.no_grad():", "if True:")], "with gradients on"),
    "NLL instead of log-likelihood": (
        "t05_class_log_likelihoods",
        [("columns.append(log_prob_from_logits(", "columns.append(-log_prob_from_logits(")],
        "negative log-likelihood",
    ),
    "mean over pixels (log-likelihood)": (
        "t05_class_log_likelihoods",
        [("log_prob_from_logits(model(x, labels), x))", "log_prob_from_logits(model(x, labels), x) / x[0].numel())")],
        "averaged over the pixels",
    ),
    "one row per class": (
        "t05_class_log_likelihoods",
        [("torch.stack(columns, dim=1)", "torch.stack(columns, dim=0)")],
        "one row per class",
    ),
    "labels ignored": (
        "t05_class_log_likelihoods",
        [("torch.full((x.shape[0],), y,", "torch.full((x.shape[0],), 0,")],
        "every class got the same log-likelihood",
    ),
    "always back to train mode": (
        "t05_class_log_likelihoods",
        [("model.train(was_training)", "model.train()")],
        "arrived in eval mode and was left in train mode",
    ),
    "images not moved": (
        "t05_class_log_likelihoods",
        [("x = x.to(device)", "x = x")],
        "class_log_likelihoods gave the model the images or the labels on the device 'cpu'",
    ),
    "labels made on the CPU": (
        "t05_class_log_likelihoods",
        [(", dtype=torch.long, device=device)", ", dtype=torch.long)")],
        "on the device 'cpu'",
    ),
    "one label for all images": (
        "t05_class_log_likelihoods",
        [("torch.full((x.shape[0],), y,", "torch.full((x.shape[1],), y,")],
        "labels of shape (1,)",
    ),
    # task 3: Bayes' rule
    "log p(x) added": (
        "t05_bayes",
        [("joint - torch.logsumexp(", "joint + torch.logsumexp(")],
        "log p(x) was added instead of subtracted",
    ),
    "keepdim dropped": (
        "t05_bayes",
        [("dim=1, keepdim=True", "dim=1")],
        "keepdim keeps the shape (B, 1)",
    ),
    "not normalised": (
        "t05_bayes",
        [("return joint - torch.logsumexp(joint, dim=1, keepdim=True)", "return joint")],
        "not normalised",
    ),
    "underflow": (
        "t05_bayes",
        [
            (
                "return joint - torch.logsumexp(joint, dim=1, keepdim=True)",
                "p = joint.exp()\n    return (p / p.sum(1, keepdim=True)).log()",
            )
        ],
        "NaN or infinity",
    ),
    "normalised over the images": (
        "t05_bayes",
        [("dim=1, keepdim=True", "dim=0, keepdim=True")],
        "over the images (dim 0)",
    ),
    "prior ignored": (
        "t05_bayes",
        [("joint = log_lik + log_prior.to(log_lik)", "joint = log_lik")],
        "prior was ignored",
    ),
    "probabilities returned": (
        "t05_bayes",
        [
            (
                "return joint - torch.logsumexp(joint, dim=1, keepdim=True)",
                "return (joint - torch.logsumexp(joint, dim=1, keepdim=True)).exp()",
            )
        ],
        "probabilities p(y | x), not log-probabilities",
    ),
}


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
    """The checks use their own seeds and restore the thread setting."""
    calls = [(lesson05.check_fine_tune, solution("t05_fine_tune")), (lesson05.check_bayes, solution("t05_bayes"))]
    assert_checks_leave_global_state_alone(calls)
