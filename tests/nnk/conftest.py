import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

# A user model whose layers are named conv1, conv2, fc1, fc2 (not leafscope's): the commands
# must take these names as they are. Its sub-modules run in order (so a TorchScript copy's
# layer features can be read too).
USER_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_channels=3, num_classes=3, width=4):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
            self.act1 = nn.Tanh()
            self.conv2 = nn.Conv2d(width, width + 2, 3, padding=1)
            self.act2 = nn.Tanh()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc1 = nn.Linear(4 * (width + 2), 12)
            self.act3 = nn.Tanh()
            self.fc2 = nn.Linear(12, num_classes)

        def forward(self, x):
            x = self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))
            return self.fc2(self.act3(self.fc1(self.flat(x))))


    def make(**kwargs):
        return Net(**kwargs)
    """
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def rgb_npz(path: Path, n: int = 36, side: int = 8, seed: int = 0) -> Path:
    """uint8 (n, side, side, 3) images whose class (0, 1, 2) is their brightest channel, as
    train and test splits (the test images differ)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, offset in (("train", 0), ("test", 1)):
        y = (np.arange(n) + offset) % 3
        x = rng.integers(0, 90, (n, side, side, 3)).astype(np.uint8)
        for i in range(n):
            x[i, :, :, y[i]] += 150
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(path, **arrays)
    return path


@pytest.fixture
def rgb_data(tmp_path) -> Path:
    """An RGB .npz (8×8 images, 36 train and 36 test points, 3 classes)."""
    return rgb_npz(tmp_path / "rgb.npz")


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """``(module name, folder, eager net, weights file, TorchScript file)`` of a user model on
    the Python path (a module name unique to the test)."""
    name = f"nnk_usernet_{tmp_path.name.replace('-', '_')}"
    folder = tmp_path / "pymods"
    folder.mkdir()
    (folder / f"{name}.py").write_text(USER_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    torch.manual_seed(0)
    net = importlib.import_module(name).make().eval()
    weights = tmp_path / "net.pt"
    torch.save(net.state_dict(), weights)
    scripted = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(scripted))
    yield name, folder, net, weights, scripted
    sys.modules.pop(name, None)
