"""Benchmark: tr G exact (C backward passes) against the Hutchinson estimate (one vjp per probe).

Model: a Hugging Face ViT built from its config (random weights; ``--image-size`` with patch 8,
hidden 192, 4 layers, 3 heads), C classes, uniform-noise points, float32. Exact: the factor of
``DataInformation`` (``class_chunk_size`` classes per backward batch) and its squared norm.
Estimate: ``trace_estimate`` with ``--probes`` Rademacher probes. Printed per C: seconds per
point of each, their ratio, the median relative standard error of the estimate and the median
|estimate − exact| in standard errors.

Usage: python bench/bench_trace.py [--classes 100,1000] [--points 2] [--probes 64]
       [--image-size 64] [--cpu-time]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from benchdevice import add_device_flag, describe, parse_device, timed

from leafscope.information import DataInformation, trace_estimate

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def vit(classes: int, size: int) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=size, patch_size=8, hidden_size=192, num_hidden_layers=4,
        num_attention_heads=3, intermediate_size=768, num_labels=classes,
    )  # fmt: skip

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = ViTForImageClassification(cfg).eval()

        def forward(self, x):
            return self.model(pixel_values=x).logits

    return Logits().eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="100,1000")
    parser.add_argument("--points", type=int, default=2)
    parser.add_argument("--probes", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--class-chunk", type=int, default=100)
    parser.add_argument("--cpu-time", action="store_true", help="one thread, process CPU time")
    add_device_flag(parser)
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    if args.cpu_time:
        torch.set_num_threads(1)

    def measure(fn):
        if not args.cpu_time:
            return timed(fn, device)
        start = time.process_time()
        out = fn()
        return out, time.process_time() - start

    print(describe(device) + (", process CPU time" if args.cpu_time else ", wall time"))
    print(f"{'C':>5} {'exact s/pt':>11} {'hutch s/pt':>11} {'speed-up':>9} {'rel stderr':>11} "
          f"{'|err|/stderr':>13}")  # fmt: skip
    for classes in (int(c) for c in args.classes.split(",")):
        torch.manual_seed(0)
        model = vit(classes, args.image_size).to(device)
        x = torch.rand(args.points, 3, args.image_size, args.image_size, device=device)
        exact, t_exact = measure(
            lambda m=model, x=x: DataInformation(m, x, class_chunk_size=args.class_chunk).trace()
        )
        est, t_est = measure(lambda m=model, x=x: trace_estimate(m, x, probes=args.probes))
        z = ((est.estimate - exact.double()).abs() / est.stderr).median()
        print(
            f"{classes:5d} {t_exact / args.points:11.3f} {t_est / args.points:11.3f} "
            f"{t_exact / t_est:8.1f}x {float(est.relative_stderr.median()):11.3f} "
            f"{float(z):13.2f}"
        )


if __name__ == "__main__":
    main()
