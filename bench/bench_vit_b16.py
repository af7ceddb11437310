"""ViT-B/16 at 224² with C = 1000 (built from its config, random weights): the top-10 eigenvalues
of G (matrix-free block Lanczos, certified bounds), the Hutchinson estimate of tr G against the
exact trace's cost, and bfloat16 against float32, on one or two points. Prints seconds per point,
peak resident memory and the relative differences.

The exact C×n factor of G needs C = 1000 backward passes per point; ``--exact-points 1`` runs it
(long on a CPU) and compares the top-10 and the trace with it.

    python bench/bench_vit_b16.py --points 1 --probes 32 [--exact-points 0] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import resource

import torch
from benchdevice import add_device_flag, describe, parse_device, timed

from leafscope.information import DataInformation, top_eigenvalues, trace_estimate

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Logits(torch.nn.Module):
    """The ViT's logits as a tensor (leafscope takes a classifier returning ``(N, C)``)."""

    def __init__(self, classes: int, size: int):
        super().__init__()
        from transformers import ViTConfig, ViTForImageClassification

        torch.manual_seed(0)
        config = ViTConfig(image_size=size, patch_size=16, num_labels=classes)  # ViT-B/16
        self.model = ViTForImageClassification(config).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--exact-points", type=int, default=0)
    add_device_flag(parser)
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    print(describe(device))
    model = Logits(args.classes, args.size).to(device)
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.points, 3, args.size, args.size, generator=gen).to(device)
    print(f"ViT-B/16, {params:,} parameters, input 3x{args.size}x{args.size}, C = {args.classes}")
    top, t_top = timed(
        lambda: top_eigenvalues(model, x, args.k, dtype=torch.float32, tol=1e-3), device
    )
    print(
        f"top-{args.k} float32: {t_top / args.points:.1f} s/point, "
        f"{int(top.operator_applications.max())} operator applications, "
        f"max bound/θ {float(top.relative_bounds().max()):.1e}, peak {peak_mib():.0f} MiB"
    )
    low, t_low = timed(
        lambda: top_eigenvalues(model, x, args.k, dtype=torch.bfloat16, tol=1e-3), device
    )
    rel = (
        (low.eigenvalues.double() - top.eigenvalues.double()).abs() / top.eigenvalues.double()
    ).max()
    print(
        f"top-{args.k} bfloat16: {t_low / args.points:.1f} s/point "
        f"(float32/bfloat16 time {t_top / t_low:.2f}), largest relative difference to float32 "
        f"{float(rel):.2%}, peak {peak_mib():.0f} MiB"
    )
    est, t_est = timed(
        lambda: trace_estimate(model, x, probes=args.probes, dtype=torch.float32), device
    )
    values, errors = est.estimate, est.stderr
    print(
        f"trace estimate ({args.probes} probes): {t_est / args.points:.1f} s/point, relative "
        f"standard error {float((errors / values).max()):.1%}, top-{args.k} share of the "
        f"estimate {float(top.eigenvalues.double().sum() / values.double().sum()):.2f}, "
        f"peak {peak_mib():.0f} MiB"
    )
    if args.exact_points:
        xe = x[: args.exact_points]
        exact, t_ex = timed(
            lambda: DataInformation(model, xe, dtype=torch.float32, class_chunk_size=20), device
        )
        eig = exact.eigenvalues()[:, : args.k].double()
        diff = ((top.eigenvalues[: args.exact_points].double() - eig).abs() / eig).max()
        print(
            f"exact factor: {t_ex / args.exact_points:.0f} s/point (top-k {t_ex / t_top:.1f}x "
            f"faster per point), top-{args.k} relative difference {float(diff):.1e}, "
            f"trace {float(exact.trace()[0]):.4e} vs estimate {float(values[0]):.4e}"
        )


if __name__ == "__main__":
    main()
