"""Data at its own shape; grey / resize only on request (checked against independent maths);
vectors, .npy and .csv; and the model/data mismatch error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.data import (
    apply_transforms,
    check_model_input,
    load_images,
    noise_like,
    resize,
    to_grey,
    to_unit_images,
)
from leafscope.errors import InputError
from leafscope.models import build_model


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("channel_last", [True, False])
def test_rgb_32_npz_keeps_its_shape(tmp_path: Path, rgb: np.ndarray, channel_last: bool) -> None:
    stored = rgb if channel_last else np.moveaxis(rgb, -1, 1)
    np.savez(tmp_path / "rgb.npz", x=stored, y=np.arange(4))
    data = load_images(str(tmp_path / "rgb.npz"), "all")
    assert data.images.shape == (4, 3, 32, 32) and data.transforms == []
    want = torch.from_numpy(np.moveaxis(rgb, -1, 1).astype(np.float32) / 255)
    assert torch.equal(data.images, want)
    assert data.describe()["input_shape"] == [3, 32, 32]


def test_small_grey_images_stay_small(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, size=(3, 10, 10), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x)
    np.savez(tmp_path / "b.npz", x=x[:, None])
    for name in ("a.npz", "b.npz"):
        data = load_images(str(tmp_path / name), "all")
        assert data.images.shape == (3, 1, 10, 10)
        assert torch.equal(data.images[:, 0] * 255, torch.from_numpy(x).float())


def test_vectors_stay_vectors(tmp_path: Path) -> None:
    v = np.random.default_rng(2).normal(size=(6, 5)) * 40  # any range for vectors
    np.savez(tmp_path / "v.npz", x=v, y=np.array([0, 1, 0, 1, 2, 2]))
    data = load_images(str(tmp_path / "v.npz"), "all")
    assert data.images.shape == (6, 5) and data.num_classes == 3 and not data.is_image
    assert torch.equal(data.images, torch.from_numpy(v.astype(np.float32)))
    np.save(tmp_path / "v.npy", v)
    assert torch.equal(load_images(str(tmp_path / "v.npy"), "all").images, data.images)
    with pytest.raises(InputError, match="vectors"):
        load_images(str(tmp_path / "v.npz"), "all", grey=True)
    assert noise_like(data).images.shape == (6, 5)


def test_npy_images_any_layout(tmp_path: Path, rgb: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", rgb)
    data = load_images("npy:" + str(tmp_path / "x.npy"), "all", limit=2)
    assert data.images.shape == (2, 3, 32, 32) and data.labels.tolist() == [-1, -1]


def test_value_and_layout_checks() -> None:
    with pytest.raises(InputError, match=r"\[0, 2\].*expected \[0, 1\]"):
        to_unit_images(np.full((2, 5, 5), 2.0, np.float32) * np.eye(5))
    with pytest.raises(InputError, match="layout='nchw'"):
        to_unit_images(np.zeros((2, 3, 8, 3), np.uint8))  # channels first or last?
    x, _ = to_unit_images(np.zeros((2, 3, 8, 3), np.uint8), layout="nhwc")
    assert x.shape == (2, 3, 3, 8)
    x, _ = to_unit_images(np.zeros((2, 6, 8, 8), np.uint8), layout="nchw")  # 6 channels
    assert x.shape == (2, 6, 8, 8)


def test_grey_is_itu_601_luma(rgb: np.ndarray) -> None:
    x = torch.from_numpy(np.moveaxis(rgb, -1, 1).astype(np.float64) / 255)
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    want = 0.299 * r + 0.587 * g + 0.114 * b
    grey = to_grey(x)
    assert grey.shape == (4, 1, 32, 32)
    np.testing.assert_allclose(grey[:, 0].numpy(), want, rtol=0, atol=1e-12)
    rgba = torch.cat([x, torch.rand(4, 1, 32, 32, dtype=x.dtype)], dim=1)
    assert torch.equal(to_grey(rgba), grey)  # alpha ignored
    one = x[:, :1]
    assert torch.equal(to_grey(one), one)


def _bilinear(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel bilinear interpolation, written out (enlarging only)."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    r0, r1, fr = axis(a.shape[0], out_h)
    c0, c1, fc = axis(a.shape[1], out_w)
    top = a[r0][:, c0] * (1 - fc) + a[r0][:, c1] * fc
    bottom = a[r1][:, c0] * (1 - fc) + a[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def test_resize_up_matches_written_out_bilinear() -> None:
    a = np.random.default_rng(3).random((5, 7))
    out = resize(torch.from_numpy(a)[None, None], (9, 16))[0, 0].numpy()
    np.testing.assert_allclose(out, _bilinear(a, 9, 16), rtol=0, atol=1e-12)


def test_resize_down_matches_pillow_bilinear() -> None:
    from PIL import Image

    a = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    for h, w in ((28, 28), (16, 16), (10, 14)):
        want = np.asarray(Image.fromarray(a, mode="F").resize((w, h), Image.BILINEAR))
        got = resize(torch.from_numpy(a)[None, None], (h, w))[0, 0].numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_transforms_are_recorded_and_a_no_op_is_said(tmp_path: Path, rgb: np.ndarray) -> None:
    np.savez(tmp_path / "rgb.npz", x=rgb)
    data = load_images(str(tmp_path / "rgb.npz"), "all")
    small = apply_transforms(data, grey=True, size="28,28")
    assert small.images.shape == (4, 1, 28, 28) and data.images.shape == (4, 3, 32, 32)
    assert small.transforms == [
        "grey: ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, 3 -> 1 channels",
        "resize: 32x32 -> 28x28 (bilinear, antialiased)",
    ]
    torch.testing.assert_close(small.images, resize(to_grey(data.images), (28, 28)))
    again = apply_transforms(small, grey=True, size=(28, 28))
    assert again.transforms[2:] == ["grey: already 1 channel, unchanged",
                                    "resize: already 28x28, unchanged"]  # fmt: skip
    with pytest.raises(InputError, match="H,W"):
        apply_transforms(data, size="28,0")


def test_mnist_is_unchanged(shared_data: Path) -> None:
    data = load_images("mnist", "test", limit=5)
    assert data.images.shape == (5, 1, 28, 28) and data.transforms == []
    assert data.normalization == "pixels/255, range [0,1], no mean/std normalisation"


def test_mismatch_error_names_both_shapes_and_the_fix() -> None:
    model = build_model("lenet")
    x = torch.rand(3, 3, 32, 32)
    with pytest.raises(InputError) as info:
        check_model_input(model, x)
    msg = str(info.value)
    assert "(N, 1, 28, 28)" in msg and "(N, 3, 32, 32)" in msg
    assert "`grey`" in msg and "`resize=28,28`" in msg and "--" not in msg  # no CLI flag
    check_model_input(model, resize(to_grey(x), (28, 28)))  # the advertised fix works
    with pytest.raises(InputError, match=r"\(N, 3, 32, 32\).*`grey`"):
        check_model_input(build_model("mlp"), x)
    check_model_input(build_model("mlp"), torch.rand(2, 784))  # an MLP flattens


def test_mismatch_of_a_model_without_config_and_mode_restored() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )  # fmt: skip
    stats = model[1].running_mean.clone()
    with pytest.raises(InputError) as info:
        check_model_input(model, torch.rand(2, 3, 10, 10))
    assert "(N, 3, 10, 10)" in str(info.value) and "`grey`" in str(info.value)
    assert "[4, 1, 3, 3]" in str(info.value)  # torch's own words name the weight shape
    check_model_input(model, torch.rand(2, 1, 10, 10))
    assert model.training and torch.equal(model[1].running_mean, stats)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_tabular(tmp_path: Path) -> None:
    p = _csv(tmp_path / "t.csv", "a,b,label,c\n1.5,2,1,-3\n0,1e3,0,4\n7,8,2,9\n")
    data = load_images(str(p), "all")
    assert data.images.shape == (3, 3) and data.labels.tolist() == [1, 0, 2]
    want = torch.tensor([[1.5, 2, -3], [0, 1000, 4], [7, 8, 9]])
    assert torch.equal(data.images, want) and data.num_classes == 3
    named = _csv(tmp_path / "n.csv", "species,x\nfir,1\noak,2\nfir,3\n")
    data = load_images("csv:" + str(named), "all", label_column="species")
    assert data.class_names == ["fir", "oak"] and data.labels.tolist() == [0, 1, 0]
    assert data.images.shape == (3, 1)
    with pytest.raises(InputError, match="no column 'label'.*species, x.*`label_column=NAME`"):
        load_images(str(named), "all")
    free = load_images(str(p), "all", label_column="none")
    assert free.images.shape == (3, 4) and free.labels.tolist() == [-1, -1, -1]
    bad = _csv(tmp_path / "b.csv", "x,label\n1,0\nfoo,1\n")
    with pytest.raises(InputError, match="line 3, column 'x' holds 'foo'"):
        load_images(str(bad), "all")
    nan = _csv(tmp_path / "nan.csv", "x,label\n1,0\nnan,1\n")
    with pytest.raises(InputError, match="line 3.*NaN"):
        load_images(str(nan), "all")
