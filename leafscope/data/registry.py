"""Known datasets: file names, checksums, folders and upstream mirrors.

``MIRRORS`` maps a dataset key to the base URLs tried in order; it is a plain module-level dict so
callers (and tests) can point it elsewhere, e.g. at a ``file://`` folder or an internal mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leafscope.errors import InputError


@dataclass(frozen=True)
class FileSpec:
    """One upstream file: its name and the digests it must match (``None`` when unknown)."""

    name: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset stored as upstream files.

    ``subfolder`` is the folder name inside a data root, ``layout_dirs`` further relative folders
    (torchvision / PyG layouts), ``splits`` maps a split to its (images, labels) file names.
    """

    key: str
    title: str
    subfolder: str
    layout_dirs: tuple[str, ...]
    files: dict[str, FileSpec]
    splits: dict[str, tuple[str, str]] = field(default_factory=dict)
    num_classes: int = 0
    class_names: tuple[str, ...] | None = None

    def file(self, name: str) -> FileSpec:
        """Return the :class:`FileSpec` called ``name`` (KeyError if unknown)."""
        return self.files[name]


def _specs(*rows: tuple) -> dict[str, FileSpec]:
    return {row[0]: FileSpec(*row) for row in rows}


_MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MNIST = DatasetSpec(
    key="mnist",
    title="MNIST",
    subfolder="mnist",
    layout_dirs=("MNIST/raw",),
    files=_specs(
        ("train-images-idx3-ubyte.gz",
         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
        ("train-labels-idx1-ubyte.gz",
         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "d53e105ee54ea40749a09fcbcd1e9432", 28881),
        ("t10k-images-idx3-ubyte.gz",
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "9fb629c4189551a2d022fa330f9573f3", 1648877),
        ("t10k-labels-idx1-ubyte.gz",
         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
         "ec29112dd5afa0611ce80d1b7f02629c", 4542),
    ),
    splits=_MNIST_SPLITS,
    num_classes=10,
)  # fmt: skip

FASHION_MNIST = DatasetSpec(
    key="fashion-mnist",
    title="Fashion-MNIST",
    subfolder="fashion-mnist",
    layout_dirs=("FashionMNIST/raw",),
    files=_specs(
        ("train-images-idx3-ubyte.gz",
         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
        ("train-labels-idx1-ubyte.gz",
         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "25c81989df183df01b3e8a0aad5dffbe", 29515),
        ("t10k-images-idx3-ubyte.gz",
         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "bef4ecab320f06d8554ea6380940ec79", 4422102),
        ("t10k-labels-idx1-ubyte.gz",
         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
         "bb300cfdad3c16e7a12a480ee83cd310", 5148),
    ),
    splits=_MNIST_SPLITS,
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
)  # fmt: skip

KMNIST = DatasetSpec(
    key="kmnist",
    title="KMNIST",
    subfolder="kmnist",
    layout_dirs=("KMNIST/raw",),
    files=_specs(
        ("train-images-idx3-ubyte.gz",
         "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
         "bdb82020997e1d708af4cf47b453dcf7"),
        ("train-labels-idx1-ubyte.gz",
         "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         "e144d726b3acfaa3e44228e80efcd344", 29497),
        ("t10k-images-idx3-ubyte.gz", None, "5c965bf0a639b31b8f53240b1b52f4d7"),
        ("t10k-labels-idx1-ubyte.gz", None, "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    splits=_MNIST_SPLITS,
    num_classes=10,
)  # fmt: skip

EMNIST_LETTERS = DatasetSpec(
    key="emnist-letters",
    title="EMNIST Letters",
    subfolder="emnist",
    layout_dirs=("EMNIST/raw", "gzip"),
    files=_specs(
        ("emnist-letters-train-images-idx3-ubyte.gz",
         "6288f418a917e007bf5fddb823a2dc7a5c6a35031401b93292a539cb12bd881f", None, 30804864),
        ("emnist-letters-train-labels-idx1-ubyte.gz",
         "9759af91ea6bccdf07a6040fd085861f2ec88e37f7c3f5760f6feb57106fbe5c", None, 79283),
        ("emnist-letters-test-images-idx3-ubyte.gz",
         "50f0e93d75b99b463e9760b8345866f22587fa2c2fba472730a5ba09c693412d", None, 5039157),
        ("emnist-letters-test-labels-idx1-ubyte.gz",
         "924955c31fe7fd809b7303b5c0141282955f4b8390c74cdfd5d80435e0f4b4cb", None, 144),
    ),
    splits={
        "train": ("emnist-letters-train-images-idx3-ubyte.gz",
                  "emnist-letters-train-labels-idx1-ubyte.gz"),
        "test": ("emnist-letters-test-images-idx3-ubyte.gz",
                 "emnist-letters-test-labels-idx1-ubyte.gz"),
    },
    num_classes=26,
)  # fmt: skip

CIFAR10 = DatasetSpec(
    key="cifar10",
    title="CIFAR-10",
    subfolder="cifar10",
    layout_dirs=(),
    files=_specs(
        ("cifar-10-python.tar.gz",
         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
         "c58f30108f718f92721af3b95e74349a", 170498071),
    ),
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"),
)  # fmt: skip

CIFAR100 = DatasetSpec(
    key="cifar100",
    title="CIFAR-100",
    subfolder="cifar100",
    layout_dirs=(),
    files=_specs(
        ("cifar-100-python.tar.gz",
         "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
         "eb9058c3a382ffc7106e4002c42a8d85", 169001437),
    ),
    num_classes=100,
)  # fmt: skip

#: Archive of each CIFAR set, its top folder, and its batches per split.
CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                "batches.meta"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python",
                 {"train": ("train",), "test": ("test",)}, "meta"),
}  # fmt: skip

SVHN = DatasetSpec(
    key="svhn",
    title="SVHN",
    subfolder="svhn",
    layout_dirs=(),
    files=_specs(
        ("train_32x32.mat", None, "e26dedcc434d2e4c54c9b2d4a06d8373", 182042733),
        ("test_32x32.mat", None, "eb5a983be6a315427106f1b164d9cef3", 64275384),
    ),
    splits={"train": ("train_32x32.mat", ""), "test": ("test_32x32.mat", "")},
    num_classes=10,
)  # fmt: skip

_PLANETOID_SHA256 = {
    "citeseer": {
        "allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
        "ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
        "graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
        "test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
        "tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
        "ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
        "x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
        "y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    },
    "cora": {
        "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
        "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    },
}

PLANETOID_KEYS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
_PLANETOID_TITLES = {"cora": ("Cora", 7), "citeseer": ("CiteSeer", 6)}

PLANETOID = {
    name: DatasetSpec(
        key=name,
        title=title,
        subfolder="planetoid",
        layout_dirs=(f"{title}/raw",),
        files={
            f"ind.{name}.{k}": FileSpec(f"ind.{name}.{k}", _PLANETOID_SHA256[name][k])
            for k in PLANETOID_KEYS
        },
        num_classes=classes,
    )
    for name, (title, classes) in _PLANETOID_TITLES.items()
}

IMAGE_DATASETS: dict[str, DatasetSpec] = {
    "mnist": MNIST,
    "fashion-mnist": FASHION_MNIST,
    "kmnist": KMNIST,
    "emnist-letters": EMNIST_LETTERS,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "svhn": SVHN,
}

#: The IDX (MNIST-format) sets among IMAGE_DATASETS.
IDX_KEYS = ("mnist", "fashion-mnist", "kmnist", "emnist-letters")

#: Base URLs tried in order when a file is missing (edit to use another mirror).
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    "emnist-letters": [],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
    "cifar100": ["https://www.cs.toronto.edu/~kriz/"],
    "svhn": ["http://ufldl.stanford.edu/housenumbers/"],
    "cora": ["https://github.com/kimiyoung/planetoid/raw/master/data/"],
    "citeseer": ["https://github.com/kimiyoung/planetoid/raw/master/data/"],
}

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "kmnist": "kmnist",
    "kuzushiji-mnist": "kmnist",
    "emnist-letters": "emnist-letters",
    "emnist_letters": "emnist-letters",
    "emnist": "emnist-letters",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "cifar100-coarse": "cifar100-coarse",
    "cifar-100-coarse": "cifar100-coarse",
    "cifar100_coarse": "cifar100-coarse",
    "svhn": "svhn",
    "digits": "digits",
    "sklearn-digits": "digits",
    "noise": "noise",
    "uniform-noise": "noise",
}

BUILTIN_IMAGE_NAMES = (
    "mnist", "fashion-mnist", "kmnist", "emnist-letters", "cifar10", "cifar100",
    "cifar100-coarse", "svhn", "digits", "noise",
)  # fmt: skip


def canonical_name(name: str) -> str | None:
    """Map a dataset name or alias (any case) to its canonical key, or ``None`` if unknown."""
    return _ALIASES.get(name.strip().lower())


def planetoid_spec(name: str) -> DatasetSpec:
    """Return the spec of a Planetoid graph (``cora`` / ``citeseer``, any case)."""
    key = name.strip().lower()
    if key not in PLANETOID:
        raise InputError(
            f"unknown Planetoid dataset {name!r}: use one of {sorted(PLANETOID)} "
            "(PubMed is not supported: its allx file is not available offline)"
        )
    return PLANETOID[key]
