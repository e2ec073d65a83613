"""The measurements behind lesson 06 that take longer than a lesson may: `python -m tools.study_levels`.

Three studies, each over several seeds, each written to notebooks/results/06_NAME.json (with the machine,
the precision and every run's learning curve) as soon as a run finishes; a run already in the file is
skipped, so an interrupted study continues where it stopped.

    heads   the 256-way softmax against the discretized logistic mixture: same Gated PixelCNN body,
            same data (8-bit mnist-subset), same epochs, seeds 0-2
    data    the 256-way softmax trained for the same number of steps on 500 to 4,000 training images
    colour  coloured digits at 4 levels per channel: R -> G -> B inside a pixel against channels that
            see only earlier pixels (`cut_channel_links`), seeds 0-2

Seed 0 of each heads and colour model is saved (fp16) as notebooks/results/06_NAME.pt for the lesson's samples.
`python -m tools.study_levels heads` runs one study.
"""

import argparse
import copy
import json
import math
import time
from pathlib import Path

from course_lib import build_model, count_parameters, evaluate, fit, load_dataset, save_checkpoint
from course_lib.benchmark import machine
from course_lib.device import cpu_has_bf16, pick_device
from course_lib.masks import cut_channel_links
from course_lib.train import seed_everything

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "notebooks" / "results"
BODY = dict(channels=32, dilations=(1, 2, 1, 4, 1))  # the default GatedPixelCNN
TRAIN = dict(batch_size=32, lr=2e-3)
SEEDS = (0, 1, 2)


def runs(study):
    """The runs of `study`: a list of dicts (key, data options, model options, training options, ...)."""
    if study == "heads":
        return [
            dict(key=f"{head}-seed{s}", head=head, seed=s, data=dict(levels=256), model=dict(BODY, head=head),
                 train=dict(TRAIN, epochs=5))
            for head in ("softmax", "logistic") for s in SEEDS
        ]  # fmt: skip
    if study == "data":
        steps = 375  # three epochs of the full 4,000 training images at batch 32
        return [
            dict(key=f"n{n}-seed{s}", n_train=n, seed=s, data=dict(levels=256, limit=n), model=dict(BODY),
                 train=dict(TRAIN, epochs=math.ceil(steps / math.ceil(n / TRAIN["batch_size"]))))
            for n in (500, 1000, 2000, 4000) for s in (0, 1)
        ]  # fmt: skip
    if study == "colour":
        return [
            dict(key=f"{order}-seed{s}", order=order, seed=s, data=dict(levels=4, color=True), model=dict(BODY),
                 train=dict(TRAIN, epochs=3))
            for order in ("ordered", "independent") for s in SEEDS
        ]  # fmt: skip
    raise SystemExit(f"unknown study {study!r}; choose heads, data or colour")


def run_one(run, precision):
    """Train one run from scratch and score the test split; returns what goes into the results file."""
    train_data = load_dataset("mnist-subset", "train", **run["data"])
    test_options = {k: v for k, v in run["data"].items() if k != "limit"}
    test_data = load_dataset("mnist-subset", "test", **test_options)
    seed_everything(run["seed"])
    model = build_model("gated", image_shape=train_data.image_shape, **run["model"], levels=train_data.levels)
    if run.get("order") == "independent":
        cut_channel_links(model)
    start = time.perf_counter()
    history = fit(model, train_data, None, seed=run["seed"], precision=precision, **run["train"])
    seconds = time.perf_counter() - start
    result = evaluate(model.float(), test_data, device="cpu")
    return model, dict(
        run,
        n_train_images=len(train_data),
        parameters=count_parameters(model),
        output_layer_parameters=count_parameters(model.out2),
        history=history,
        train_seconds=round(seconds, 1),
        test_nats_per_image=result["nats"],
        test_bits_per_dim=result["bpd"],
        test_images=result["n_images"],
    )


def study(name):
    """Run every run of study `name` that its results file does not hold yet."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"06_{name}.json"
    precision = "bf16" if cpu_has_bf16() else "fp32"
    record = json.loads(path.read_text()) if path.exists() else dict(study=name, runs={})
    record.update(script="tools/study_levels.py", machine=machine(pick_device()), precision=precision)
    for run in runs(name):
        if run["key"] in record["runs"]:
            continue
        model, result = run_one(run, precision)
        record["runs"][run["key"]] = result
        print(
            f"{name} {run['key']}: {result['test_bits_per_dim']:.4f} bits/dim, {result['train_seconds']:.0f} s",
            flush=True,
        )
        if run["seed"] == 0 and name in ("heads", "colour"):
            tag = run.get("head") or run.get("order")
            save_checkpoint(RESULTS / f"06_{name}_{tag}.pt", copy.deepcopy(model).half())
        path.write_text(json.dumps(record, indent=1) + "\n")


def summary(name, field):
    """{value of `field`: [test bits/dim of each seed]} for study `name`, from its results file."""
    runs = json.loads((RESULTS / f"06_{name}.json").read_text())["runs"]
    groups = {}
    for run in runs.values():
        groups.setdefault(run[field], []).append(run["test_bits_per_dim"])
    return groups


def readme_table() -> str:
    """The README's table of the three studies, generated from their results files (tests compare the two)."""
    rows = ["| study | variant | seeds | test bits/dim, mean (min-max) |", "|---|---|---|---|"]
    labels = {"heads": ("head", "{}"), "data": ("n_train", "{:,} training digits"), "colour": ("order", "{}")}
    for name, (field, label) in labels.items():
        for value, bpd in summary(name, field).items():
            rows.append(
                f"| {name} | {label.format(value)} | {len(bpd)} | "
                f"{sum(bpd) / len(bpd):.4f} ({min(bpd):.4f}-{max(bpd):.4f}) |"
            )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="*", default=["heads", "data", "colour"])
    parser.add_argument("--table", action="store_true", help="print the README's table of the studies and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(readme_table())
        return
    for name in args.studies:
        if name not in ("heads", "data", "colour"):
            parser.error(f"unknown study {name!r}; choose heads, data or colour")
        study(name)


if __name__ == "__main__":
    main()
