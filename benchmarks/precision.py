"""Does bf16 autocast train as well as fp32? Train the same model on the same data, with the same
seed and run length, once in fp32 and once with bf16 autocast; compare test bits/dim.

    python -m benchmarks.precision                 # default model, binarized mnist-subset, 8 epochs
    python -m benchmarks.precision --epochs 2 --limit 1000

bf16 keeps fp32's exponent range but only 8 bits of mantissa; autocast runs convolutions and matrix
products in bf16 and keeps the weights, the optimizer and the loss reduction in fp32.
"""

import argparse
import time

import torch

from benchmarks.common import table, write
from course_lib import GatedPixelCNN, count_parameters, evaluate, fit, load_dataset
from course_lib.benchmark import machine
from course_lib.device import pick_device


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="images per split (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/precision_<device>.json)")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    train = load_dataset("mnist-subset", "train", limit=args.limit)
    test = load_dataset("mnist-subset", "test", limit=args.limit and max(1, args.limit // 4))
    results, rows = [], []
    for precision in args.precisions:
        torch.manual_seed(0)
        model = GatedPixelCNN(train.image_shape)
        start = time.perf_counter()
        fit(
            model,
            train,
            test,
            epochs=args.epochs,
            batch_size=args.batch_size,
            precision=precision,
            device=device,
            seed=0,
            progress=False,
        )
        seconds = time.perf_counter() - start
        result = evaluate(model, test)  # scored in fp32
        results.append(
            {"precision": precision, "test_bpd": result["bpd"], "test_nats": result["nats"], "train_seconds": seconds}
        )
        print(f"  {precision}: {result['bpd']:.4f} bits/dim, {seconds:.0f} s", flush=True)
    base = results[0]["test_bpd"]
    for r in results:
        r["relative_to_first"] = r["test_bpd"] / base - 1
    rows = [
        [
            r["precision"],
            f"{r['test_bpd']:.4f}",
            f"{r['test_nats']:.2f}",
            f"{100 * r['relative_to_first']:+.2f}%",
            f"{r['train_seconds']:.0f}",
        ]
        for r in results
    ]
    text = table(["precision", "test bits/dim", "test nats", f"vs {results[0]['precision']}", "train s"], rows)
    write(
        "precision",
        device,
        {
            "benchmark": "precision",
            "model": "GatedPixelCNN",
            "config": model.config,
            "parameters": count_parameters(model),
            "epochs": args.epochs,
            "train_images": len(train),
            "test_images": len(test),
            "machine": machine(device),
            "results": results,
            "table": text,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
