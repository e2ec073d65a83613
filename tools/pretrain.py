"""Train the course's pretrained models from scratch: `make pretrained` (all) or
`python -m tools.pretrain binary levels256` (some).

Each recipe fixes its data, model, training options and seed. A run trains in runs/pretrain/NAME/
(resumable with --resume; a checkpoint after every epoch), and only when it has finished does it write
course_lib/weights/NAME.pt (fp16 weights) and NAME.json (the recipe, machine, training time, learning
curve and the test NLL of the fp16 weights as shipped). A failed or interrupted run leaves the shipped
files as they were.
"""

import argparse
import copy
import json
import time
from pathlib import Path

from course_lib import count_parameters, evaluate, load_dataset, save_checkpoint
from course_lib.benchmark import machine
from course_lib.zoo import WEIGHTS, train_recipe

ROOT = Path(__file__).resolve().parents[1]

WIDE = dict(name="gated", channels=48, dilations=(1, 2, 1, 4, 1, 2, 1))  # 7 gated layers, 48 channels


def recipe(about, levels, epochs, color=False, num_classes=None):
    """One recipe: mnist-subset at `levels`, the WIDE Gated PixelCNN, Adam 2e-3 at batch 32 (cosine decay)."""
    data = dict(name="mnist-subset", levels=levels, **({"color": True} if color else {}))
    model = dict(WIDE, **({"num_classes": num_classes} if num_classes else {}))
    return dict(about=about, data=data, model=model, train=dict(epochs=epochs, batch_size=32, lr=2e-3))


RECIPES = {
    "binary": recipe("the default binary model's data, trained longer and wider", 2, 20),
    "binary-conditional": recipe("the binary model told the digit's class", 2, 20, num_classes=10),
    "levels256": recipe("8-bit grey levels, a 256-way softmax per pixel", 256, 16),
    "colour": recipe("digits in random colours, 256 levels per channel (R -> G -> B within a pixel)", 256, 12, True),
}
PHOTOS = dict(name="photos", levels=256)  # 8x8 colour patches of two photographs (lesson 07)
RECIPES.update(
    {
        "photos-colour": dict(
            about="8x8 photograph patches, 256 levels per channel, a Gated PixelCNN (R -> G -> B within a pixel)",
            data=PHOTOS,
            model=dict(name="gated", channels=32, dilations=(1, 2, 1)),
            train=dict(epochs=6, batch_size=32, lr=2e-3),
        ),
        "photos-attention": dict(
            about="8x8 photograph patches, 256 levels per channel, a causal transformer over the 192 sub-pixels",
            data=PHOTOS,
            model=dict(name="attention", dim=32, heads=2, layers=2),
            train=dict(epochs=6, batch_size=32, lr=2e-3),
        ),
    }
)
SEED = 0


def train(name, resume=False, device="auto"):
    """Train recipe `name`, then write course_lib/weights/NAME.pt and NAME.json. Returns the record."""
    recipe = RECIPES[name]
    folder = ROOT / "runs" / "pretrain" / name
    print(f"{name}: {recipe['about']}", flush=True)
    start = time.perf_counter()
    model, history, precision = train_recipe(
        recipe,
        seed=SEED,
        device=device,
        checkpoint=folder / "checkpoint.pt",
        resume=resume,
        on_epoch_end=lambda epoch, h: print(
            f"  epoch {epoch + 1}: train {h['train_nats'][-1]:.2f}, test {h['test_nats'][-1]:.2f} nats/image "
            f"({h['test_bpd'][-1]:.4f} bits/dim), {h['seconds'][-1]:.0f} s",
            flush=True,
        ),
    )
    seconds = time.perf_counter() - start
    device = next(model.parameters()).device
    test_data = load_dataset(split="test", seed=SEED, **recipe["data"])
    shipped = copy.deepcopy(model).cpu().half()
    scored = copy.deepcopy(shipped).float()  # exactly the weights a learner loads
    result = evaluate(scored, test_data, device="cpu")
    record = dict(
        name=name,
        about=recipe["about"],
        data=recipe["data"],
        model=recipe["model"],
        parameters=count_parameters(model),
        train=dict(recipe["train"], seed=SEED, precision=precision, device=str(device)),
        train_seconds=round(seconds, 1),
        machine=machine(device),
        history=history,
        test_nats_per_image=result["nats"],
        test_bits_per_dim=result["bpd"],
        test_images=result["n_images"],
        scored="the fp16 weights as shipped, computed in float32 on the CPU",
    )
    save_checkpoint(WEIGHTS / f"{name}.pt", shipped)
    (WEIGHTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: test {result['nats']:.2f} nats/image ({result['bpd']:.4f} bits/dim), {seconds:.0f} s", flush=True)
    return record


def readme_table() -> str:
    """The README's table of the shipped models, generated from their records (tests compare the two)."""
    from course_lib.zoo import available, record

    rows = [
        "| name | what it models | parameters | epochs | test NLL (nats/image) | test bits/dim | training | machine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in available():
        r = record(name)
        where = r["machine"]["gpu"] if r["train"]["device"].startswith("cuda") else r["train"]["device"]
        threads = r["machine"]["threads"]
        rows.append(
            f"| `{name}` | {r['about']} | {r['parameters']:,} | {r['train']['epochs']} | "
            f"{r['test_nats_per_image']:.2f} | {r['test_bits_per_dim']:.4f} | {r['train_seconds'] / 60:.0f} min "
            f"({r['train']['precision']}) | {r['machine']['cpu']}, {threads} thread{'s' * (threads != 1)} ({where}) |"
        )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", default=list(RECIPES), help=f"recipes to train (default: all of {list(RECIPES)})"
    )
    parser.add_argument("--resume", action="store_true", help="continue each run from runs/pretrain/NAME/checkpoint.pt")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda")
    parser.add_argument("--table", action="store_true", help="print the README's table of the shipped models and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(readme_table())
        return
    unknown = [n for n in args.names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    for name in args.names:
        train(name, resume=args.resume, device=args.device)


if __name__ == "__main__":
    main()
