"""Benchmark: spectrum of the data information matrix G, leafscope vs the dense route.

1. 256 MNIST test points through LeNet-5 (briefly trained here so spectra are not degenerate):
   leafscope (vmap(jacrev) + thin SVD of the C×n factor, float64) against the obvious route
   (torch.autograd.functional.jacobian per point, the n×n matrix G = Jᵀ M J, eigh), same run.
2. One 3×224×224 input through a ResNet-18-style model (random weights, 10 classes): leafscope
   time; the dense route would need an n×n matrix, n = 150528, reported against this machine's RAM.

On ``--device cuda`` the leafscope routes run on the GPU (timed with the device synchronised);
the dense reference route and the brief training stay on the CPU.

Usage: python bench/bench_dim.py [--points 256] [--dense-points 256] [--device cpu] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from benchdevice import add_device_flag, describe, parse_device, timed
from torch import nn
from torch.autograd.functional import jacobian

from leafscope.data import load_images
from leafscope.information import point_spectra
from leafscope.io import write_json
from leafscope.models import build_model


def brief_training(model: nn.Module, steps: int = 300, seed: int = 0) -> nn.Module:
    data = load_images("mnist", "train", limit=steps * 64)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(steps):
        xb, yb = data.images[i * 64 : (i + 1) * 64], data.labels[i * 64 : (i + 1) * 64]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model.eval()


def dense_spectrum(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The obvious route: one autograd jacobian of log p per point, the n×n matrix
    G = Σ_i p_i ∇log p_i ∇log p_iᵀ, full eigh; returns the C−1 largest eigenvalues.

    Also returns, from the same independent Jacobian, the squared singular values of the rows
    √p_i ∇log p_i: a check that separates Jacobian errors from the n×n eigensolver's own error.
    """
    model = model.double().eval()
    dense, thin = [], []
    for xi in x.double():
        xi = xi.unsqueeze(0)
        L = jacobian(lambda z: torch.log_softmax(model(z), 1)[0], xi).reshape(-1, xi.numel())
        with torch.no_grad():
            p = torch.softmax(model(xi)[0], 0)
        G = (L.T * p) @ L
        dense.append(torch.linalg.eigvalsh(G).flip(0)[: len(p) - 1])
        thin.append(torch.linalg.svdvals(p.sqrt()[:, None] * L)[: len(p) - 1] ** 2)
    return torch.stack(dense), torch.stack(thin)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


def resnet18_like(num_classes: int = 10) -> nn.Module:
    layers, cin = [], 64
    for cout, stride in [
        (64, 1),
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
    ]:
        layers.append(BasicBlock(cin, cout, stride))
        cin = cout
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, num_classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--dense-points", type=int, default=256)
    parser.add_argument("--json", default=None, help="write the headline numbers here")
    add_device_flag(parser)
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {describe(device)}")

    torch.manual_seed(0)
    model = brief_training(build_model("lenet"))
    x = load_images("mnist", "test", limit=args.points).images
    point_spectra(model, x[:8], device=device)  # warm-up
    fast, t_fast = timed(
        lambda: point_spectra(model, x, batch_size=64, dtype=torch.float64, device=device), device
    )
    nd = min(args.dense_points, args.points)
    t0 = time.perf_counter()
    dense, thin = dense_spectrum(model, x[:nd])
    t_dense = (time.perf_counter() - t0) * args.points / nd
    ev = fast.eigenvalues[:nd]
    rel = (ev - dense).abs() / dense.abs()
    resolved = ev >= 1e-7 * ev[:, :1]  # above the dense eigh's 1e-6-relative resolution
    n = x[0].numel()
    bound = (ev - dense).abs() / (n * torch.finfo(torch.float64).eps * ev[:, :1])
    print(f"[LeNet, {args.points} MNIST test points, float64]")
    print(f"  leafscope (vmap(jacrev) + C×n SVD): {t_fast:8.2f} s")
    print(
        f"  dense (jacobian per point + n×n eigh): {t_dense:8.2f} s"
        + ("" if nd == args.points else f" (measured on {nd}, scaled)")
    )
    print(f"  speed-up: {t_dense / t_fast:6.1f}x")
    print(
        f"  max relative eigenvalue difference, eigenvalues ≥ 1e-7·λ1 ({int(resolved.sum())} of "
        f"{ev.numel()}): {rel[resolved].max():.2e}; all eigenvalues: {rel.max():.2e}"
    )
    print(
        f"  largest |difference| / (n·eps·λ1) (the dense eigh's own error scale): {bound.max():.2e}"
    )
    rel_thin = ((ev - thin).abs() / thin.abs()).max()
    print(
        "  max relative difference to the thin SVD of the independent autograd Jacobian, "
        f"all eigenvalues: {rel_thin:.2e}"
    )
    print(
        f"  median log10 eigenvalues (highest, lowest): {fast.summary().median_log10_highest:.2f},"
        f" {fast.summary().median_log10_lowest:.2f}"
    )

    net = resnet18_like().eval().to(device)
    img = torch.rand(1, 3, 224, 224, device=device)
    from leafscope import DataInformation

    if device.type == "cuda":  # cuDNN autotuning and kernel loading outside the timing
        DataInformation(net, img[:, :, :64, :64]).eigenvalues()

    def factor_and_spectrum() -> tuple:
        G = DataInformation(net, img)
        return G, G.eigenvalues()

    (G, ev), t_res = timed(factor_and_spectrum, device)
    n = img[0].numel()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print("[ResNet-18-style, one 3×224×224 input, 10 classes, float32]")
    print(
        f"  leafscope: {t_res:.2f} s, factor {tuple(G.factor.shape)}, top eigenvalue {ev[0, 0]:.3e}"
    )
    print(
        f"  dense route: G would be {n}×{n} = {n * n * 4 / 1024**3:.0f} GiB in float32 "
        f"(this machine: {ram / 1024**3:.0f} GiB RAM): cannot allocate"
    )
    if args.json:
        write_json(
            args.json,
            {
                "device": str(device), "points": args.points, "lenet_leafscope_s": t_fast,
                "lenet_dense_s": t_dense, "lenet_speedup": t_dense / t_fast,
                "lenet_max_rel_diff_resolved": float(rel[resolved].max()),
                "resnet18_224_c10_s": t_res, "resnet18_top_eigenvalue": float(ev[0, 0]),
            },
        )  # fmt: skip


if __name__ == "__main__":
    main()
