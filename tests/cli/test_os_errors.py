"""An unwritable --json / --out path ends a command with one clear line and exit status 2."""

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.main import main, os_error_message
from leafscope.models import build_model
from leafscope.training import save_checkpoint


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("oserr")
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(8,), num_classes=3, image_size=28)
    ckpt = save_checkpoint(root / "ck.pt", model=model, epoch=0, step=0, history=[])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    np.savez(root / "d.npz", x=images, y=np.arange(12) % 3)
    (root / "afile").write_text("a file, not a folder")
    return root, ckpt


def _one_line_error(capsys, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith(f"leafscope {command}: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_spectrum_json_under_a_file_and_on_a_folder(inputs, capsys):
    root, ckpt = inputs
    base = [
        "spectrum",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        str(root / "d.npz"),
        "--split",
        "all",
    ]
    base += ["--points", "2", "--device", "cpu"]
    assert main([*base, "--json", str(root / "afile" / "x.json")]) == 2
    line = _one_line_error(capsys, "spectrum")
    assert str(root / "afile") in line and "is a file, not a folder" in line
    assert main([*base, "--json", str(root)]) == 2
    line = _one_line_error(capsys, "spectrum")
    assert f"{root}: " in line and "pass a file name inside it" in line
    assert sorted(p.name for p in root.iterdir()) == ["afile", "ck.pt", "d.npz"]  # no temp left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux only")
def test_json_in_proc_names_the_path(inputs, capsys):
    root, ckpt = inputs
    argv = [
        "spectrum",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        str(root / "d.npz"),
        "--split",
        "all",
    ]
    assert main([*argv, "--points", "1", "--json", "/proc/leafscope-x.json"]) == 2
    line = _one_line_error(capsys, "spectrum")
    assert "/proc/leafscope-x.json: " in line and ".tmp" not in line


def test_train_out_under_a_file(inputs, capsys):
    root, _ = inputs
    out = root / "afile" / "run"
    argv = ["train", "--dataset", str(root / "d.npz"), "--model", "mlp", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    line = _one_line_error(capsys, "train")
    assert str(root / "afile") in line and "pass another path" in line


@pytest.mark.parametrize(
    "exc, expected",
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/srv/.r.json.ab12cd34.tmp"),
            "/srv/r.json: Permission denied: no permission",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/out/fig.png"),
            "/data/out/fig.png: No space left on device: the disk is full",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/a", None, "/mnt/b.json"),
            "/mnt/b.json: Read-only file system: the file system is read-only",
        ),
        (OSError("something odd"), "something odd: check the path and the disk"),
    ],
)
def test_os_error_message(exc, expected):
    assert os_error_message(exc).startswith(expected)
    assert "\n" not in os_error_message(exc)


def test_path_helper_keeps_ordinary_dotfiles():
    exc = PermissionError(errno.EACCES, "Permission denied", str(Path("/home/u/.config")))
    assert os_error_message(exc).startswith("/home/u/.config: ")
