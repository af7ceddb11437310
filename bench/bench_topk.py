"""Benchmark: matrix-free top-10 spectrum of G against the exact factor, ResNet-18 at 224².

ResNet-18 ImageNet-style (7×7 stride-2 stem, max-pool, 4 stages of BasicBlocks, BatchNorm in
eval mode; ``resnet18_like`` of bench_dim.py), random weights, C ∈ {10, 100, 1000} classes, one
3×224×224 uniform-noise input per point, float32. Exact route: ``DataInformation`` (vmap(jacrev)
→ the C×n factor, C backward passes) and its thin SVD. Matrix-free route: ``top_eigenvalues``
(block Lanczos on the C×C Gram K through jvp/vjp), k = min(10, C − 1), stopping when every
certified bound ≤ tol·θ. Two regimes per C:

* ``flat``: the random head as initialised; p is nearly uniform (hardest case for Krylov methods:
  the spectrum of G is flat);
* ``peaked``: trained-like p: the head rescaled so the logits have standard deviation 2 across
  classes, then class 0's bias raised until the mean largest probability is 0.8 (p_2 ≈ 1e-2,
  p_10 ≈ 3e-3 at C = 1000, as for a trained ImageNet classifier). J is unchanged by the bias.

The exact factor's backward passes run ``--class-chunk`` classes at a time
(``DataInformation(class_chunk_size=...)``, one sample at a time): at 224² the peak was 3.1 GB
with 20 classes at a time (2.5 GB with 50). With ``--exact-max-classes 100`` the exact time
above that is extrapolated linearly in C from the measured C = 100 time (the cost is C backward
passes), and the error is then stated by the certified bounds alone. ``--baseline-block 14``
adds, in the same run, the previous configuration (block k + 4 = 14, plain ``jvp``).

Usage: python bench/bench_topk.py [--classes 10,100,1000] [--points 2] [--exact-points-1000 1]
       [--block-size 3] [--device cuda] [--baseline-block 14]
"""

from __future__ import annotations

import argparse
import os

import torch
from bench_dim import resnet18_like
from benchdevice import add_device_flag, parse_device, timed
from torch import nn

from leafscope.information import DataInformation, top_eigenvalues


def peak_head(model: nn.Module, x: torch.Tensor, std: float = 2.0, target: float = 0.8) -> None:
    """Make p trained-like, in place: scale the last Linear layer so the logits have standard
    deviation ``std`` across classes, then raise class 0's bias until the mean largest
    probability on x is ``target`` (one confident class, a realistic tail behind it)."""
    head = model[-1]
    with torch.no_grad():
        scale = std / float(model(x).std(dim=1).mean())
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        logits = model(x)
        lo, hi = 0.0, 100.0
        for _ in range(60):
            mid = (lo + hi) / 2
            boosted = logits.clone()
            boosted[:, 0] += mid
            if torch.softmax(boosted, 1).max(1).values.mean() < target:
                lo = mid
            else:
                hi = mid
        head.bias[0] += hi


def run_top(model: nn.Module, x: torch.Tensor, k: int, tol: float, block: int, linear: bool):
    return timed(
        lambda: top_eigenvalues(model, x, k, tol=tol, block_size=block, linearize=linear),
        x.device,
    )


def run_case(model: nn.Module, x: torch.Tensor, n_exact: int, args) -> dict:
    """Exact factor on the first n_exact points (0: skipped), top-k on all; times and errors."""
    c = model[-1].out_features
    k = min(10, c - 1)
    spec, t_top = run_top(model, x, k, args.tol, args.block_size, True)
    row = {
        "C": c,
        "k": k,
        "top_s": t_top / x.shape[0],
        "max_rel_bound": float(spec.relative_bounds().max()),
        "applications": spec.operator_applications.tolist(),
        "converged": bool(spec.converged.all()),
        "max_p": float(spec.probs.max(1).values.mean()),
    }
    if args.baseline_block:
        old, t_old = run_top(model, x, k, args.tol, min(args.baseline_block, c - 1), False)
        row |= {"old_s": t_old / x.shape[0], "old_applications": old.operator_applications.tolist()}
    if n_exact == 0:
        return row | {"exact_s": None, "rel": None, "covered": None}
    exact, t_exact = timed(
        lambda: (
            DataInformation(model, x[:n_exact], class_chunk_size=args.class_chunk)
            .eigenvalues()[:, :k]
            .cpu()
        ),
        x.device,
    )
    ref = exact.double()
    theta = spec.eigenvalues[:n_exact].double().cpu()
    rel = ((theta - ref).abs() / ref).amax(dim=0)  # max over points, per eigenvalue
    covered = bool(((theta - ref).abs() <= spec.error_bounds[:n_exact].double().cpu()).all())
    return row | {"exact_s": t_exact / n_exact, "rel": rel, "covered": covered}


def baseline(row: dict) -> str:
    """The previous configuration's cell (block 14, plain jvp), or a dash."""
    if "old_s" not in row:
        return "—"
    ratio = row["exact_s"] / row["old_s"] if row["exact_s"] else float("nan")
    return f"{row['old_s']:.1f} ({max(row['old_applications'])}, {ratio:.1f}×)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="10,100,1000")
    parser.add_argument("--regimes", default="flat,peaked")
    parser.add_argument("--points", type=int, default=2, help="points for the top-k route")
    parser.add_argument("--exact-points", type=int, default=2, help="exact route, C <= 100")
    parser.add_argument("--exact-points-1000", type=int, default=1, help="exact route, C > 100")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--exact-max-classes", type=int, default=10**9, help="skip exact above")
    parser.add_argument("--block-size", type=int, default=3, help="top_eigenvalues block_size")
    parser.add_argument("--class-chunk", type=int, default=50, help="exact: classes per pass")
    parser.add_argument("--baseline-block", type=int, default=0, help="also run block B, jvp")
    add_device_flag(parser)
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}, block {args.block_size}"
    )
    rows: list[dict] = []
    for c in [int(v) for v in args.classes.split(",")]:
        for regime in args.regimes.split(","):
            torch.manual_seed(0)
            model = resnet18_like(c).eval()
            x = torch.rand(args.points, 3, args.size, args.size, generator=torch.Generator())
            if regime == "peaked":
                peak_head(model, x)
            model, x = model.to(device), x.to(device)
            n_exact = min(args.points, args.exact_points if c <= 100 else args.exact_points_1000)
            if c > args.exact_max_classes:
                n_exact = 0
            row = run_case(model, x, n_exact, args) | {"regime": regime, "note": ""}
            if row["exact_s"] is None:
                base = [r for r in rows if r["regime"] == regime and r["exact_s"] is not None]
                if base:
                    ref = max(base, key=lambda r: r["C"])
                    row["exact_s"] = ref["exact_s"] * c / ref["C"]
                    row["note"] = f" (extrapolated ×{c // ref['C']} from C={ref['C']})"
            row["ratio"] = row["exact_s"] / row["top_s"] if row["exact_s"] else float("nan")
            rows.append(row)
            print(f"C={c} {regime}: {row}", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print(
        "| C | regime | mean max p | exact s/point | top-k s/point | speed-up | K products "
        "| max rel. error vs exact (worst of k) | max bound/θ | bounds cover errors "
        "| baseline s/point (products, speed-up) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = "—" if r["rel"] is None else f"{float(r['rel'].max()):.1e}"
        exact = "—" if r["exact_s"] is None else f"{r['exact_s']:.1f}{r['note']}"
        print(
            f"| {r['C']} | {r['regime']} | {r['max_p']:.3f} | {exact} | {r['top_s']:.1f} | "
            f"**{r['ratio']:.1f}×** | {max(r['applications'])} | {err} | "
            f"{r['max_rel_bound']:.1e} | {r['covered']} | {baseline(r)} |"
        )
    print("\nper-eigenvalue max relative error vs the exact factor (over the exact points):")
    for r in rows:
        if r["rel"] is not None:
            values = " ".join(f"{v:.1e}" for v in r["rel"].tolist())
            print(f"C={r['C']} {r['regime']}: {values}")


if __name__ == "__main__":
    main()
