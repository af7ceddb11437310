"""Small trained models and data files for the explore tests (grey 8x8 quadrants, RGB 8x8
colours, vectors), written once per session; the real MNIST files when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.models.spec import ModelSpec
from leafscope.testing import shared_data_dir

FACTORIES = '''
import torch
from torch import nn


def rgb_cnn(num_classes=3, side=8):
    """A small CNN on (N, 3, side, side) images."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(96, 16), nn.Tanh(), nn.Linear(16, num_classes),
    )
'''


def mnist_dir() -> Path | None:
    """The folder holding the real MNIST files (shared/data or $LEAFSCOPE_DATA), if any."""
    found = shared_data_dir()
    if found is not None:
        return found
    env = os.environ.get("LEAFSCOPE_DATA")
    if env and (Path(env) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        return Path(env)
    return None


def _fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
    return model.eval()


def quadrants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey 8x8 images of 4 classes: class c is bright in quadrant c, on noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = 0.25 * rng.random((n, 1, 8, 8))
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 0.5 + 0.2 * rng.random((4, 4))
    return (np.round(np.clip(x, 0, 1) * 255) / 255).astype(np.float32), y.astype(np.int64)


def colours(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB 8x8 images of 3 classes: class c has a bright channel c, and a stroke."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = 0.3 * rng.random((n, 3, 8, 8))
    for i, c in enumerate(y):
        x[i, int(c)] += 0.4 + 0.2 * rng.random((8, 8))
        x[i, :, int(rng.integers(0, 8)), :] = 0.9
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="session")
def explore_files(tmp_path_factory) -> dict:
    """Data files and model specs: ``grey`` (tiny CNN, 4 classes), ``rgb`` (a factory CNN, 3
    classes), ``vector`` (tiny MLP on 6 features, 3 classes)."""
    from leafscope.testing import tiny_cnn, tiny_mlp

    root = tmp_path_factory.mktemp("explore")
    torch.manual_seed(0)
    out = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = quadrants(400, 0)
        xt, yt = quadrants(40, 1)
        np.savez(root / "grey.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
        model = _fit(tiny_cnn(n_classes=4, seed=0), torch.from_numpy(x), torch.from_numpy(y),
                     150, 0.02)  # fmt: skip
        torch.save(model.state_dict(), root / "grey.pt")
        out["grey"] = (
            root / "grey.npz",
            ModelSpec(factory="leafscope.testing:tiny_cnn", factory_kwargs='{"n_classes": 4}',
                      weights=str(root / "grey.pt")),
        )  # fmt: skip

        (root / "factories.py").write_text(FACTORIES)
        x, y = colours(300, 0)
        xt, yt = colours(30, 1)
        np.savez(root / "rgb.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
        namespace: dict = {}
        exec(FACTORIES, namespace)  # noqa: S102 - the test's own factory text
        model = _fit(namespace["rgb_cnn"](), torch.from_numpy(x), torch.from_numpy(y), 150, 0.02)
        torch.save(model.state_dict(), root / "rgb.pt")
        out["rgb"] = (
            root / "rgb.npz",
            ModelSpec(factory=f"{root / 'factories.py'}:rgb_cnn", weights=str(root / "rgb.pt")),
        )

        rng = np.random.default_rng(0)
        xv = rng.normal(size=(300, 6)).astype(np.float32)
        yv = (xv[:, 0] > 0).astype(np.int64) + (xv[:, 1] > 0.5).astype(np.int64)
        np.savez(root / "vector.npz", x_train=xv[:260], y_train=yv[:260], x_test=xv[260:],
                 y_test=yv[260:])  # fmt: skip
        model = _fit(tiny_mlp(n_in=6, n_classes=3, seed=0), torch.from_numpy(xv[:260]),
                     torch.from_numpy(yv[:260]), 150, 0.02)  # fmt: skip
        torch.save(model.state_dict(), root / "vector.pt")
        out["vector"] = (
            root / "vector.npz",
            ModelSpec(factory="leafscope.testing:tiny_mlp",
                      factory_kwargs='{"n_classes": 3, "n_in": 6}',
                      weights=str(root / "vector.pt")),
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return out


@pytest.fixture(scope="session")
def mnist_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """A LeNet trained for a few hundred steps on real MNIST (skips without the files):
    ``(checkpoint, data folder)``."""
    folder = mnist_dir()
    if folder is None:
        pytest.skip("the real MNIST files (shared/data or $LEAFSCOPE_DATA) are absent")
    from leafscope.data import load_images
    from leafscope.models import build_model
    from leafscope.training import save_checkpoint

    train = load_images("mnist", "train", data_dir=folder, limit=3000)
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = _fit(build_model("lenet"), train.images, train.labels, 120, 0.003)
    finally:
        torch.set_num_threads(previous)
    path = tmp_path_factory.mktemp("mnist-ck") / "lenet.pt"
    save_checkpoint(path, model=model, epoch=1, step=120, history=[])
    return path, folder
