"""The streamed data layer: ``DataSpec.open()`` decodes only the points taken, with the values
of an eager load (checked against decoding written out here), its splits (``all``, holdout) and
the adapters (noise of a model's shape, any torch Dataset)."""

from __future__ import annotations

import gc
import gzip
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from leafscope.data import (
    DatasetPointSet,
    DataSpec,
    load_images,
    read_idx,
    resize,
    select_points,
    to_grey,
)
from leafscope.errors import InputError

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ORDER = [5, 0, 11, 3, 3, 8]  # unsorted, with a repeat


def _raw(points):
    """The stored array under any wrappers (transform, holdout subset)."""
    while not hasattr(points, "raw"):
        points = points.base
    return points.raw


# --- an image folder: the same values as decoding every file, a fraction of the memory --------


def _class_folder(root: Path, per_class: int, classes: int = 10, side: int = 96) -> Path:
    """RGB PNGs sorted by class (one sub-folder each); smooth images, so they write fast."""
    ramp = np.linspace(0, 60, side, dtype=np.float32)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = np.empty((side, side, 3), np.uint8)
            img[..., 0] = 10 * c + ramp[None, :]
            img[..., 1] = (i % 200) + ramp[:, None]
            img[..., 2] = 7 * c
            Image.fromarray(img, "RGB").save(folder / f"{i:05d}.png", compress_level=1)
    return root


def _peak_open_take(root: Path, decoded: set) -> tuple[int, torch.Tensor, list[int]]:
    gc.collect()
    tracemalloc.start()
    try:
        points = DataSpec(name=str(root), split="all").open()
        opened = len(decoded)
        chosen = select_points(points.labels, points=64, seed=0)
        x, y = points.take(chosen)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert opened == 0 and len(decoded) == 64  # headers only, then the 64 files taken
    decoded.clear()
    return peak, x, y.tolist()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> set:
    """The image files whose pixels Pillow decodes (``load``), whoever asks."""
    from PIL import ImageFile

    files: set = set()
    load = ImageFile.ImageFile.load

    def counting(self):
        files.add(self.filename)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return files


def test_folder_memory_does_not_grow_with_the_set(tmp_path: Path, decoded: set) -> None:
    small = _class_folder(tmp_path / "small", 40)  # 400 images
    large = _class_folder(tmp_path / "large", 240)  # 2400 images: 265 MB as float32
    peak_small, x_small, y_small = _peak_open_take(small, decoded)
    peak_large, x_large, y_large = _peak_open_take(large, decoded)
    assert x_small.shape == x_large.shape == (64, 3, 96, 96)
    assert len(set(y_small)) >= 8 and len(set(y_large)) >= 8  # stratified: the classes show
    # decoding all 2400 files first (as the eager loader did) peaks at ~320 MB here
    assert abs(peak_large - peak_small) < 3 * 2**20, (peak_small, peak_large)
    assert peak_large < 40 * 2**20


def _mixed_folder(root: Path) -> Path:
    """3 classes of 4 files, 20x24: RGB, one grey and one RGBA among them."""
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):
            if (c, i) == (1, 2):
                arr, mode = rng.integers(0, 256, (20, 24), dtype=np.uint8), "L"
            elif (c, i) == (2, 0):
                arr, mode = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "RGBA"
            else:
                arr, mode = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB"
            Image.fromarray(arr, mode).save(root / f"c{c}" / f"{i}.png")
    return root


def _eager_folder(root: Path) -> tuple[torch.Tensor, list[int]]:
    """Every file decoded (RGBA -> RGB, grey repeated to 3 channels), /255, stacked."""
    images, labels = [], []
    for c, folder in enumerate(sorted(root.iterdir())):
        for file in sorted(folder.iterdir()):
            with Image.open(file) as img:
                arr = np.asarray(img.convert("RGB") if img.mode == "RGBA" else img)
            arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr
            images.append(arr)
            labels.append(c)
    x = np.moveaxis(np.stack(images), -1, 1).astype(np.float32) / np.float32(255)
    return torch.from_numpy(x), labels


@pytest.mark.parametrize(("grey", "size"), [(False, None), (True, None), (False, "8,7"),
                                            (True, "30,30")])  # fmt: skip
def test_folder_take_equals_decoding_every_file(tmp_path: Path, grey, size) -> None:
    root = _mixed_folder(tmp_path / "set")
    want, labels = _eager_folder(root)
    if size is not None:
        want = resize(want, size)
    if grey:
        want = to_grey(want)
    points = DataSpec(name=str(root), split="all", grey=grey, resize=size).open()
    x, y = points.take(ORDER)
    assert torch.equal(x, want[ORDER]) and y.tolist() == [labels[i] for i in ORDER]
    assert points.class_names == ["c0", "c1", "c2"] and points.num_classes == 3
    eager = load_images(str(root), "all", grey=grey, resize=size)  # one batch of every point
    assert torch.equal(eager.images, want)
    notes = points.describe()["transforms"]
    assert notes == eager.transforms and notes[:2] == [
        "alpha channel dropped",
        "grey files repeated to 3 channels to match the colour files",
    ]
    assert any("luma" in n for n in notes) == grey
    assert any(n.startswith("resize:") for n in notes) == (size is not None)


def test_folder_of_mixed_sizes_needs_resize(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (10, 12)).save(root / "a" / "x.png")
    Image.new("RGB", (16, 16)).save(root / "a" / "y.png")
    with pytest.raises(InputError, match=r"12x10 in a/x\.png, 16x16 in a/y\.png.*resize") as e:
        DataSpec(name=str(root), split="all").open()
    assert "--" not in str(e.value)
    points = DataSpec(name=str(root), split="all", resize="8,8").open()
    assert points.take([0, 1])[0].shape == (2, 3, 8, 8)


# --- arrays: memory-mapped or kept at their stored dtype ----------------------------------------


@pytest.fixture
def rgb_uint8() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(12, 10, 9, 3), dtype=np.uint8)


def _eager_array(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(x, -1, 1).astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_take_equals_the_whole_array(tmp_path: Path, rgb_uint8, save) -> None:
    path = tmp_path / "set.npz"
    save(path, x=rgb_uint8, y=np.arange(12) % 4)
    points = DataSpec(name=str(path), split="all").open()
    raw = _raw(points)
    assert raw.dtype == np.uint8  # kept as stored: a quarter of float32
    assert isinstance(raw, np.memmap) == (save is np.savez)  # stored members are mapped
    x, y = points.take(ORDER)
    assert torch.equal(x, _eager_array(rgb_uint8)[ORDER])
    assert y.tolist() == [i % 4 for i in ORDER] and points.input_shape == (3, 10, 9)
    small = DataSpec(name=str(path), split="all", grey=True, resize="5,4").open()
    want = resize(to_grey(_eager_array(rgb_uint8)), (5, 4))
    assert torch.equal(small.take(ORDER)[0], want[ORDER])
    assert (
        small.describe()["transforms"]
        == load_images(str(path), "all", grey=True, resize="5,4").transforms
    )


def test_npy_float_memory_mapped(tmp_path: Path) -> None:
    x = np.random.default_rng(2).random((12, 2, 6, 6))
    np.save(tmp_path / "x.npy", x)
    points = DataSpec(name=str(tmp_path / "x.npy"), split="all").open()
    assert isinstance(_raw(points), np.memmap) and _raw(points).dtype == np.float64
    got, labels = points.take(ORDER)
    assert torch.equal(got, torch.from_numpy(x.astype(np.float32))[ORDER])
    assert labels.tolist() == [-1] * len(ORDER) and points.num_classes == 0


def test_bad_values_are_named_by_the_take_that_reads_them(tmp_path: Path) -> None:
    x = np.full((6, 4, 4), 0.5, np.float32)
    x[4, 1, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    points = DataSpec(name=str(tmp_path / "x.npy"), split="all").open()
    assert points.take([0, 1, 2])[0].shape == (3, 1, 4, 4)  # the clean points read fine
    with pytest.raises(InputError, match=r"x\.npy point 4 contains NaN or inf: clean or drop it"):
        points.take([3, 4])


def test_mnist_idx_take_equals_the_file(shared_data: Path, tmp_path: Path) -> None:
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    want = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
    index = [9999, 0, 4321, 17, 17]
    points = DataSpec(name="mnist", split="test", data_dir=str(shared_data)).open()
    assert _raw(points).dtype == np.uint8 and len(points) == 10000
    x, y = points.take(index)
    assert torch.equal(x, want[index]) and y.tolist() == labels[index].tolist()
    # the same file uncompressed, as a user IDX set: memory-mapped
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(shared_data / "mnist" / f"{name}.gz") as src:
            with open(tmp_path / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    user = DataSpec(name=f"idx:{tmp_path / 't10k-images-idx3-ubyte'}", split="all").open()
    assert isinstance(_raw(user), np.memmap)
    x, y = user.take(index)
    assert torch.equal(x, want[index]) and y.tolist() == labels[index].tolist()
    grey_small = DataSpec(name="mnist", split="test", resize="14,14").open()
    assert torch.equal(grey_small.take(index)[0], resize(want[index], (14, 14)))


def test_builtin_all_is_train_then_test(shared_data: Path) -> None:
    points = DataSpec(name="mnist", split="all").open()
    train = DataSpec(name="mnist", split="train").open()
    test = DataSpec(name="mnist", split="test").open()
    assert len(points) == 70000 and points.split == "all"
    x, y = points.take([59999, 60000])
    assert torch.equal(x[0], train.take([59999])[0][0]) and torch.equal(x[1], test.take([0])[0][0])
    assert y.tolist() == [int(train.labels[-1]), int(test.labels[0])]
    assert points.describe()["class_counts"] == [
        a + b for a, b in zip(train.describe()["class_counts"],
                              test.describe()["class_counts"], strict=True)
    ]  # fmt: skip


# --- splits ----------------------------------------------------------------------------------


@pytest.fixture
def plain_npz(tmp_path: Path) -> Path:
    x = np.random.default_rng(3).integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", x=x, y=np.arange(40) % 5)
    return tmp_path / "plain.npz"


def test_a_set_without_a_split_refuses_train_and_test(tmp_path: Path, plain_npz: Path) -> None:
    (tmp_path / "v.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    folder = _mixed_folder(tmp_path / "images")
    for name in (plain_npz, tmp_path / "v.csv", tmp_path / "x.npy", folder):
        for split in ("train", "test"):
            with pytest.raises(InputError, match="no train/test split") as info:
                DataSpec(name=str(name), split=split).open()
            msg = str(info.value)
            assert "`split=all`" in msg and "`holdout=F`" in msg and "--" not in msg
            assert str(name) in msg and "\n" not in msg
        assert len(DataSpec(name=str(name), split="all").open()) > 0
        assert not DataSpec(name=str(name)).has_split()
    assert DataSpec(name="mnist").has_split() and DataSpec(name="noise").has_split()


def test_a_task_split_of_a_set_without_one_names_only_holdout(tmp_path, plain_npz) -> None:
    """A task that needs a train or test split (ood, nnk's test error...) cannot use the whole
    set: the refusal names only ``holdout``, and with it the split exists."""
    spec = DataSpec(name=str(plain_npz), split="all")
    for split in ("train", "test"):
        with pytest.raises(InputError, match="no train/test split, and it is needed") as info:
            spec.with_split(split, purpose="it is needed").open()
        assert "`holdout=F`" in str(info.value) and "split=all" not in str(info.value)
    held = spec.replace(holdout=0.25)
    train, test = held.with_split("train", purpose="x"), held.with_split("test", purpose="x")
    assert len(train.open()) == 30 and len(test.open()) == 10
    assert DataSpec(name="mnist").with_split("train", purpose="x").split == "train"
    assert len(spec.with_split("all", purpose="x").open()) == 40
    assert (
        held.with_split("test", purpose="x").fingerprint()
        == held.replace(split="test").fingerprint()
    )


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_holdout_splits_disjoint_seeded_and_whole(plain_npz: Path, fraction: float) -> None:
    spec = DataSpec(name=str(plain_npz), holdout=fraction, seed=7)
    whole = spec.replace(split="all", holdout=None).open()
    train, test = spec.replace(split="train").open(), spec.replace(split="test").open()
    assert len(test) == round(40 * fraction) and len(train) + len(test) == 40
    held, kept = test.index.tolist(), train.index.tolist()
    assert not set(held) & set(kept) and sorted(held + kept) == list(range(40))
    assert held == spec.replace(split="test").open().index.tolist()  # deterministic
    assert held != spec.replace(split="test", seed=8).open().index.tolist()  # seeded
    x, y = test.take([2, 0])
    wx, wy = whole.take([held[2], held[0]])
    assert torch.equal(x, wx) and torch.equal(y, wy)
    assert torch.equal(test.labels, whole.labels[held])
    info = test.describe()
    assert info["split"] == "test" and info["num_points"] == len(test)
    assert "holdout" in info["source"] and sum(info["class_counts"]) == len(test)


def test_holdout_of_a_set_with_its_own_split_is_refused(tmp_path: Path) -> None:
    x_train, x_test = np.zeros((3, 4, 4), np.uint8), np.full((2, 4, 4), 255, np.uint8)
    np.savez(tmp_path / "s.npz", x_train=x_train, x_test=x_test, y_train=[0, 1, 0], y_test=[1, 1])
    with pytest.raises(InputError, match="own train/test split.*holdout"):
        DataSpec(name=str(tmp_path / "s.npz"), split="test", holdout=0.5).open()
    with pytest.raises(InputError, match="own train/test split"):
        DataSpec(name="digits", split="test", holdout=0.5).open()
    both = DataSpec(name=str(tmp_path / "s.npz"), split="all").open()
    assert DataSpec(name=str(tmp_path / "s.npz")).has_split()
    assert len(both) == 5 and both.labels.tolist() == [0, 1, 0, 1, 1]
    assert torch.equal(both.take([2, 3])[0][:, 0].amax(dim=(1, 2)), torch.tensor([0.0, 1.0]))


def test_folder_splits_number_classes_alike(tmp_path: Path) -> None:
    for split, classes in (("train", ("cat", "dog", "owl")), ("test", ("dog", "owl"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("L", (6, 6), 9).save(tmp_path / split / name / "a.png")
    test = DataSpec(name=str(tmp_path), split="test").open()
    assert test.class_names == ["cat", "dog", "owl"] and test.labels.tolist() == [1, 2]
    both = DataSpec(name=str(tmp_path), split="all").open()
    assert both.labels.tolist() == [0, 1, 2, 1, 2] and both.num_classes == 3


# --- generated noise and any torch Dataset ---------------------------------------------------


def test_noise_takes_the_model_shape_and_is_per_point() -> None:
    points = DataSpec(name="noise", split="test", input_shape=(3, 8, 5), seed=4).open()
    assert points.input_shape == (3, 8, 5) and len(points) == 2000
    x, y = points.take(range(10))
    assert x.shape == (10, 3, 8, 5) and (y == -1).all()
    assert torch.equal(points.take([7, 2])[0], x[[7, 2]])  # point i alone = point i among others
    assert 0.0 <= float(x.min()) and float(x.max()) < 1.0
    other = DataSpec(name="noise", split="test", input_shape=(3, 8, 5), seed=5).open()
    assert not torch.equal(other.take([0])[0], x[:1])
    train = DataSpec(name="noise", split="train", input_shape=(3, 8, 5), seed=4).open()
    assert not torch.equal(train.take([0])[0], x[:1])
    assert DataSpec(name="noise", split="test").open().input_shape == (1, 28, 28)
    grey = DataSpec(name="noise", split="test", input_shape=(3, 8, 5), seed=4, grey=True).open()
    assert torch.equal(grey.take([3])[0], to_grey(x[[3]]))


class _Items(Dataset):
    """Items (uint8 (C, H, W) tensor, int label), counting the reads."""

    def __init__(self, n: int):
        self.x = torch.randint(0, 256, (n, 3, 5, 5), dtype=torch.uint8)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.x[i], i % 3


def test_dataset_adapter() -> None:
    x = torch.rand(6, 1, 4, 4)
    points = DatasetPointSet(TensorDataset(x, torch.tensor([0, 1, 2, 0, 1, 2])), name="toy")
    got, y = points.take([4, 1])
    assert torch.equal(got, x[[4, 1]]) and y.tolist() == [1, 1]
    assert points.labels.tolist() == [0, 1, 2, 0, 1, 2] and points.num_classes == 3
    assert points.describe()["input_shape"] == [1, 4, 4] and points.name == "toy"
    items = _Items(9)
    lazy = DatasetPointSet(items)
    assert items.reads == 1  # only item 0, for the shape
    got, y = lazy.take([8, 2])
    assert items.reads == 3 and y.tolist() == [2, 2]
    assert torch.equal(got, items.x[[8, 2]].float() / 255)
    assert lazy.labels.tolist() == [i % 3 for i in range(9)]  # read once, when asked
    chosen = select_points(lazy.labels, points=3, seed=0)
    assert sorted(int(lazy.labels[i]) for i in chosen) == [0, 1, 2]
    unlabelled = DatasetPointSet([torch.zeros(7), torch.ones(7)])
    assert unlabelled.take([1])[0].tolist() == [[1.0] * 7]
    assert unlabelled.labels.tolist() == [-1, -1]
    with pytest.raises(InputError, match="item 1 has shape"):
        DatasetPointSet([torch.zeros(7), torch.ones(8)]).take([0, 1])
    pil = DatasetPointSet([(Image.new("RGB", (3, 2), (255, 0, 51)), 4)])
    assert torch.allclose(pil.take([0])[0][0, :, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    assert pil.input_shape == (3, 2, 3)
