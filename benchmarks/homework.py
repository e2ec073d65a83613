"""The homework's reference run (solutions/08_homework.py, full mode): its own `train_homework` and
`HomeworkPixelCNN`, trained on the 4,000 training digits at 14x14 for the notebook's EPOCHS, once per seed,
unconditional and class-conditional, then scored the way the checks of Tasks 3 and 4 score a submission
(`coursework.checks.lesson08.test_nll` and `digit_accuracy`). The checks' full-mode thresholds (NLL_FULL,
ACCURACY_FULL) are derived from this file's results (tests/test_checks_lesson08.py holds them to it).

    .venv/bin/python -m benchmarks.homework                 # seeds 0 1 2: about 6 minutes on 2 idle cores
    .venv/bin/python -m benchmarks.homework --seeds 0 --epochs 1 --limit 200 --out /tmp/h.json   # a quick look

Each row: the seed, the model, the training's wall and CPU seconds, the test NLL (nats per image and
bits/dim) and the share of samples the course's classifier reads as the digit asked for (the unconditional
model is sampled without labels and compared with the same labels: chance). The load average is stored
beside the numbers. Writes benchmarks/results/homework_cpu.json.
"""

import argparse
import json
import math
import os
import tempfile
import time

import torch

from benchmarks.common import RESULTS, table
from benchmarks.grading import loadavg
from course_lib.data import subset
from coursework.checks.lesson08 import digit_accuracy, test_nll
from tools.mistakes import tasks_by_id

TASKS = ("t08_gated_layer", "t08_model", "t08_train")
PIXELS = 14 * 14


def reference():
    """The solved homework's namespace in full mode: setup cell, then the solutions of Tasks 1-3."""
    if os.environ.get("COURSE_FAST"):
        raise SystemExit("unset COURSE_FAST: the reference run is the notebook's full mode")
    tasks = tasks_by_id()
    namespace = {}
    exec(tasks[("08", TASKS[0])].setup, namespace)
    for task in TASKS:
        exec(tasks[("08", task)].source, namespace)
    return namespace


def run(namespace, seed, conditional, epochs, folder, data):
    """Train one reference model on `data` and score it as the checks do: a result row (dict)."""
    path = os.path.join(folder, f"seed{seed}_{'cond' if conditional else 'uncond'}.pt")
    wall, cpu = time.perf_counter(), time.process_time()
    model = namespace["train_homework"](path, data, seed=seed, conditional=conditional, epochs=epochs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.eval()
    nats = test_nll(model)
    return {
        "seed": seed,
        "model": "conditional" if conditional else "unconditional",
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "test_nats": round(nats, 3),
        "test_bpd": round(nats / (PIXELS * math.log(2)), 4),
        "digit_accuracy": round(digit_accuracy(model, labels_known=conditional), 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the notebook's EPOCHS in full mode")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images (a quick look)")
    parser.add_argument("--out", default=str(RESULTS / "homework_cpu.json"))
    args = parser.parse_args(argv)
    namespace = reference()
    epochs = args.epochs or namespace["EPOCHS"]
    data = namespace["TRAIN"] if args.limit is None else subset(namespace["TRAIN"], range(args.limit))
    rows, start_load = [], loadavg()
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for conditional in (False, True):
                rows.append(run(namespace, seed, conditional, epochs, folder, data))
                print(rows[-1], flush=True)
    header = ["seed", "model", "wall s", "cpu s", "nats", "bits/dim", "digits read"]
    keys = ["seed", "model", "train_wall_s", "train_cpu_s", "test_nats", "test_bpd", "digit_accuracy"]
    table(header, [[r[k] for k in keys] for r in rows])
    payload = {
        "what": "solutions/08_homework.py reference, full mode, scored as checks.lesson08 scores a submission",
        "epochs": epochs,
        "train_images": len(data),
        "threads": torch.get_num_threads(),
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        f.write(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
