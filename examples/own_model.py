"""Your own CIFAR-style model through leafscope: spectra of G, an OOD detector and a leaf path.

Run: python examples/own_model.py [--points 8]

The model is yours (any nn.Module mapping (N, 3, H, W) images in [0, 1] to logits); here a small
BatchNorm CNN trained for a few steps on synthetic RGB images whose class is the colour of a blob,
so the script needs no data files. Replace ``make_data`` and ``SmallCNN`` by your own.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from leafscope import DataInformation
from leafscope.applications import EnergyDetector, auroc
from leafscope.foliation import PathConfig, horizontal_paths


class SmallCNN(nn.Module):
    """A user's model: conv-BN-ReLU blocks, global pooling, a linear head."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 16, 16) images in [0, 1]: grey noise plus a blob in the colour of the class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.rand(n, 3, 16, 16, generator=g)
    for i in range(n):
        r, c = torch.randint(2, 10, (2,), generator=g).tolist()
        x[i, y[i], r : r + 5, c : c + 5] += 0.6
    return x.clamp(0, 1), y


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 60) -> nn.Module:
    """Your own loop; leafscope only needs the trained model in eval mode."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        batch = torch.arange(step * 32, step * 32 + 32) % len(x)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train = make_data(512, seed=0)
    x_test, y_test = make_data(256, seed=1)
    model = train(SmallCNN(), x_train, y_train)
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.3f}")

    # 1. The data information matrix: at most C - 1 = 2 nonzero eigenvalues per point.
    G = DataInformation(model, x_test[: args.points], dtype=torch.float64)
    eig = G.eigenvalues()
    print(f"G eigenvalues of point 0: {eig[0].tolist()}")
    print(f"trace = sum of eigenvalues: {G.trace()[0].item():.6g} = {eig[0].sum().item():.6g}")

    # 2. OOD detection, scikit-learn style: fit on training images, higher score = more normal.
    detector = EnergyDetector(model).fit(x_train)
    noise = torch.rand(256, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    score = auroc(detector.score_samples(x_test), detector.score_samples(noise))
    print(f"energy AUROC, synthetic test vs uniform noise: {score:.3f}")

    # 3. A horizontal path: move on the leaf of image 0 toward image 1.
    path = horizontal_paths(model, x_test[:1], x_test[1:2], PathConfig(max_steps=200))
    print(f"leaf path: remaining distance {float(path.relative_distance[0]):.3f} of the start")


if __name__ == "__main__":
    main()
