"""Benchmark: the error of low-precision G against float64, per route.

Models: the zoo's LeNet-5 (``build_model('lenet')``) trained briefly on MNIST (``--steps`` SGD
steps on the first training images, so p is peaked as for a trained model), and a tiny Hugging
Face ViT built from its config (``leafscope.testing.hub.save_tiny_vit``, random weights) with
its classifier scaled so the logits spread (``--vit-logit-scale``). Points: MNIST test images /
uniform noise in [0, 1]. For each compute dtype (bfloat16, float16, float32) against float64:

* exact route (``point_spectra``: the forward and the Jacobian in the dtype, the factor and
  its SVD in float32): relative error of λ_1, of λ_1..λ_3 (the largest over the three), of every
  nonzero eigenvalue λ_1..λ_{C-1}, and of the trace; median and maximum over the points;
* matrix-free top-3 (``top_eigenvalues``: products in the dtype, Lanczos in float32): relative
  error of θ_1..θ_3 against float64, and how often the certified bound covers the distance to
  the float64 eigenvalue (the bound certifies the operator as evaluated, not its rounding);
* Hutchinson trace (``trace_estimate``, 64 probes): |estimate − exact| in standard errors.

Usage: python bench/bench_precision.py [--points 16] [--steps 300]
       [--dtypes bfloat16,float16,float32]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch

from leafscope.information import point_spectra, top_eigenvalues, trace_estimate
from leafscope.models import build_model, load_model
from leafscope.models.spec import ModelSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def trained_lenet(steps: int, seed: int = 0):
    from leafscope.data import load_images

    torch.manual_seed(seed)
    train = load_images("mnist", "train", limit=4096)
    model = build_model("lenet")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(train.labels), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(train.images[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = load_images("mnist", "test", limit=1000)
    with torch.no_grad():
        accuracy = float((model.eval()(test.images).argmax(1) == test.labels).float().mean())
    return model.eval(), test.images, accuracy


def tiny_vit(folder: str, scale: float):
    from leafscope.testing.hub import save_tiny_vit

    save_tiny_vit(folder)
    model = load_model(ModelSpec(checkpoint=f"hf:{folder}"))
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).abs() / b.double().abs()


def measure(name: str, model, x: torch.Tensor, dtypes: list[str], k: int = 3) -> None:
    ref = point_spectra(model, x, dtype=torch.float64, batch_size=len(x))
    top_ref = ref.eigenvalues[:, :k]
    p1 = float(torch.median(ref.max_probability))
    c = ref.eigenvalues.shape[1] + 1
    print(f"\n{name}: {len(x)} points, C = {c}, median max p = {p1:.3f}")
    print(
        f"{'dtype':9} {'route':8} {'λ1 med':>9} {'λ1 max':>9} {'λ1-3 med':>9} {'λ1-3 max':>9} "
        f"{'all med':>9} {'all max':>9} {'tr med':>9} {'tr max':>9}"
    )
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        got = point_spectra(model, x, dtype=dtype, batch_size=len(x))
        e1 = rel(got.eigenvalues[:, 0], ref.eigenvalues[:, 0])
        e3 = rel(got.eigenvalues[:, :k], top_ref).max(dim=1).values
        eall = rel(got.eigenvalues, ref.eigenvalues).max(dim=1).values
        etr = rel(got.trace, ref.trace)
        print(
            f"{dtype_name:9} {'exact':8} "
            + " ".join(
                f"{float(f(v)):9.2e}"
                for v in (e1, e3, eall, etr)
                for f in (torch.median, torch.max)
            )
        )
        top = top_eigenvalues(model, x, k, dtype=dtype, tol=1e-3)
        et = rel(top.eigenvalues, top_ref)
        covered = ((top.eigenvalues.double() - top_ref).abs() <= top.error_bounds.double()).float()
        print(
            f"{dtype_name:9} {'top-3':8} {float(torch.median(et[:, 0])):9.2e} "
            f"{float(et[:, 0].max()):9.2e} {float(torch.median(et.max(1).values)):9.2e} "
            f"{float(et.max()):9.2e}   bound covers the float64 distance in "
            f"{100 * float(covered.mean()):.0f}% of pairs"
        )
    est = trace_estimate(model, x, probes=64, dtype=torch.float64, seed=1)
    z = ((est.estimate - ref.trace).abs() / est.stderr).numpy()
    print(
        f"Hutchinson (64 probes, float64): relative stderr median "
        f"{float(est.relative_stderr.median()):.2e}; |estimate - exact| / stderr median "
        f"{np.median(z):.2f}, max {z.max():.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dtypes", default="bfloat16,float16,float32")
    parser.add_argument("--vit-logit-scale", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = args.dtypes.split(",")
    lenet, test, accuracy = trained_lenet(args.steps)
    measure(f"LeNet-5 ({args.steps} SGD steps, test accuracy {accuracy:.3f}), MNIST test",
            lenet, test[: args.points], dtypes)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        vit = tiny_vit(folder, args.vit_logit_scale)
        torch.manual_seed(0)
        x = torch.rand(args.points, 3, 32, 32)
        measure(f"tiny ViT (32², patch 8, 2 layers, logits x{args.vit_logit_scale:g}), noise",
                vit, x, dtypes)  # fmt: skip


if __name__ == "__main__":
    main()
