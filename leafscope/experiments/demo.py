"""The measurements of the demo: partial training (LeNet-5 on MNIST or ResNet-18 on CIFAR-10),
the spectra of G on data and noise points, G across the checkpoints, the filter temperatures and
hot/cold pruning, and small versions of the feature commands.

Each step is a function returning a plain result object; :func:`leafscope.demo.run_demo` runs
them in order and hands the results to :mod:`leafscope.report.demo_sections`, which only renders.
The sizes of every step (points, steps) are fields of :class:`DemoConfig`; :func:`demo_config`
fills them for a data set (``mnist`` or ``cifar10``) and for ``--quick``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.applications.denoise import DenoiseResult, denoise_benchmark
from leafscope.applications.detectors import make_detector
from leafscope.applications.ood import OODResult, evaluate_detectors
from leafscope.applications.transfer import TransferResult, transfer_table
from leafscope.data import ImageDataset, load_images, noise_like, train_val_split
from leafscope.data import registry as data_registry
from leafscope.data.search import candidate_dirs, data_search_path, find_file
from leafscope.errors import DataFileError, InputError
from leafscope.experiments.foliation import WalkExperimentResult, walk_experiment
from leafscope.experiments.nnk import RunGeometry, run_geometry
from leafscope.experiments.thermo.common import PruningRow, spearman
from leafscope.foliation import InvolutivityResult, PathConfig, WalkConfig, involutivity
from leafscope.information import point_spectra
from leafscope.information.spectrum import PointSpectra
from leafscope.models import build_model_for_input
from leafscope.thermo import TemperatureHistory, TemperatureMonitor
from leafscope.thermo.pruning import magnitude_scores, masked, random_scores, select_groups
from leafscope.training import FitResult, evaluate, fit, list_checkpoints, load_checkpoint
from leafscope.training.augment import HorizontalFlip, RandomCrop
from leafscope.training.callbacks import Callback

NORMALIZATION = "pixels/255 in [0, 1], no mean/std normalisation"
# Rank tolerance of the across-training figure: eigenvalues >= 1e-6 λ1 (singular values of the
# factor >= 1e-3 σ1), a resolution at which saturation is visible (NumPy's default counts 9).
RANK_RTOL = 1e-3
OOD_DETECTORS = ("msp", "energy", "mahalanobis", "knn", "pixel-nn", "dim-trace")
LEAF_DETECTOR = "leaf-distance"
DATASETS = ("mnist", "cifar10")
DATA_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


@dataclass
class DemoConfig:
    """Settings of the demo; :func:`demo_config` fills them per data set.

    Defaults: MNIST with LeNet-5 (about 1.5 minutes on 2 CPU cores). Counts are points (images)
    unless named steps; ``*_steps`` are optimizer or path steps.

    Attributes:
        out: output folder (report.html, figures/, results.json, run/ with checkpoints).
        device: torch device for training and analysis.
        dataset: ``mnist`` or ``cifar10`` (read from the data search path, never downloaded
            for CIFAR-10).
        model: zoo model trained (``lenet``, ``resnet18``...), built for the data's shape.
        epochs, lr, momentum, weight_decay, batch_size: SGD training (one epoch is partial on
            purpose, so G has not collapsed, cf. theory §1 "saturation").
        augment: random crop (padding 4) and horizontal flip of each training batch.
        train_limit: use only the first N training images (None = all, 10% held out).
        test_limit: use only the first N test images (None = all).
        checkpoint_every_steps: extra checkpoints for the across-training figures.
        points: test points (and as many noise points) for the spectra.
        explore_points: test points of the explorer page (what the model notices).
        points_per_checkpoint, val_points: test points for G and validation points for the
            loss / accuracy at every checkpoint.
        thermo_layer: layer whose filters are monitored and pruned.
        pruning_points: test points scoring each pruning condition (None = all loaded).
        fol_pairs, fol_max_steps, fol_walk_points, fol_walk_steps, involutivity_points: the
            foliation section (paths between pairs, vertical walks, Lie brackets).
        ood_points, ood_fit_points: in / out points scored and training points fitted by the
            OOD baselines and the DIM trace.
        leaf_ood_points, leaf_ood_steps: points per set and path steps of the leaf detector.
        transfer_points, transfer_train_points, transfer_val_points: the transfer table.
        denoise_points, denoise_tune_points, denoise_leaf_steps, denoise_pool: denoising.
        nnk_points, nnk_test_points, nnk_layers, nnk_k: the NNK section.
        quick: a smoke run (recorded; the sizes come from :func:`demo_config`).
        seed: seeds initialisation, split, batch order and noise.
        data_dir: extra data folder searched first.
        progress: show progress bars.
        timings: filled by the run: wall and CPU seconds of each step.
    """

    out: Path = Path("leafscope-demo")
    device: str = "cpu"
    dataset: str = "mnist"
    model: str = "lenet"
    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    augment: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    checkpoint_every_steps: int = 100
    points: int = 256
    explore_points: int = 24
    points_per_checkpoint: int = 64
    val_points: int = 2000
    thermo_layer: str = "conv1"
    pruning_points: int | None = None
    fol_pairs: int = 3
    fol_max_steps: int = 200
    fol_walk_points: int = 32
    fol_walk_steps: int = 200
    involutivity_points: int = 3
    ood_points: int = 256
    ood_fit_points: int = 2000
    leaf_ood_points: int = 64
    leaf_ood_steps: int = 10
    transfer_points: int = 128
    transfer_train_points: int = 2000
    transfer_val_points: int = 500
    denoise_points: int = 32
    denoise_tune_points: int = 50
    denoise_leaf_steps: int = 20
    denoise_pool: int = 3000
    nnk_points: int = 500
    nnk_test_points: int = 2000
    nnk_layers: tuple[str, ...] = ("conv1", "conv2", "fc1")
    nnk_k: int = 15
    quick: bool = False
    seed: int = 0
    data_dir: str | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)


# ResNet-18 at 32×32, measured as CPU time on this project's 2-core machine and halved for two
# idle cores: a training step of 64 images ≈ 2.9 s, a forward pass ≈ 10 ms per image, G at one
# point (C = 10 backward passes, float64) ≈ 0.75 s, one leaf-path / walk step per point ≈ 1.1 s,
# involutivity ≈ 9.5 s per point. Sum of these sizes: ≈ 6.5 minutes with SVHN and CIFAR-100
# present (≈ 5.5 without), ≈ 8 minutes if two threads reach only 80% of two cores.
CIFAR10_SETTINGS: dict[str, Any] = {
    "dataset": "cifar10", "model": "resnet18", "lr": 0.05, "weight_decay": 5e-4,
    "augment": True, "train_limit": 2000, "test_limit": 1000, "checkpoint_every_steps": 10,
    "points": 16, "points_per_checkpoint": 8, "val_points": 200, "pruning_points": 200,
    "fol_pairs": 1, "fol_max_steps": 6, "fol_walk_points": 3, "fol_walk_steps": 6,
    "involutivity_points": 1, "ood_points": 16, "ood_fit_points": 500, "leaf_ood_points": 4,
    "leaf_ood_steps": 2, "transfer_points": 8, "transfer_train_points": 500,
    "transfer_val_points": 200, "denoise_points": 4, "denoise_tune_points": 6,
    "denoise_leaf_steps": 3, "denoise_pool": 500, "nnk_points": 200, "nnk_test_points": 200,
    "nnk_layers": ("layer2", "layer4", "pool"),
}  # fmt: skip
QUICK_SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {
        "fol_pairs": 1, "fol_max_steps": 20, "fol_walk_points": 8, "fol_walk_steps": 20,
        "ood_points": 64, "leaf_ood_points": 16, "leaf_ood_steps": 5, "transfer_points": 32,
        "denoise_points": 8, "denoise_tune_points": 10, "denoise_leaf_steps": 5,
        "nnk_points": 150, "nnk_test_points": 500,
    },
    "cifar10": {
        "train_limit": 200, "test_limit": 100, "checkpoint_every_steps": 2, "batch_size": 32,
        "points": 4, "explore_points": 4, "points_per_checkpoint": 2, "val_points": 20,
        "pruning_points": 40,
        "fol_max_steps": 2, "fol_walk_points": 2, "fol_walk_steps": 2, "ood_points": 4,
        "ood_fit_points": 40, "leaf_ood_points": 2, "leaf_ood_steps": 1, "transfer_points": 2,
        "transfer_train_points": 40, "transfer_val_points": 20, "denoise_points": 2,
        "denoise_tune_points": 2, "denoise_leaf_steps": 1, "denoise_pool": 40,
        "nnk_points": 30, "nnk_test_points": 20,
    },
}  # fmt: skip


def demo_config(dataset: str = "mnist", *, quick: bool = False, **overrides: Any) -> DemoConfig:
    """The demo's settings for ``dataset`` (``mnist`` or ``cifar10``), shrunk by ``quick``.

    Args:
        dataset: the data set trained on.
        quick: smaller sizes everywhere (a smoke run).
        **overrides: any :class:`DemoConfig` field; ``None`` values are ignored.

    Returns:
        A :class:`DemoConfig`.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown demo data set {dataset!r}: use one of {', '.join(DATASETS)}")
    names = {f.name for f in dataclasses.fields(DemoConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputError(f"unknown demo setting(s) {unknown}: use DemoConfig fields")
    settings: dict[str, Any] = dict(CIFAR10_SETTINGS) if dataset == "cifar10" else {}
    if quick:
        settings.update(QUICK_SETTINGS[dataset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return DemoConfig(quick=quick, **settings)


@dataclass
class DemoData:
    """The demo's data: all loaded training images, their train / validation split, test."""

    train_all: ImageDataset
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset

    @property
    def title(self) -> str:
        """Display name of the data set (``MNIST``, ``CIFAR-10``)."""
        return DATA_TITLES.get(self.train_all.name, self.train_all.name)


@dataclass
class Training:
    """The partial training run and its final checkpoint (loss in nats, accuracy in [0, 1]).

    ``step_losses[i]`` is the training loss of optimizer step ``i + 1``; ``temperatures`` is
    what the :class:`TemperatureMonitor` recorded on ``cfg.thermo_layer``.
    """

    fit_result: FitResult
    model: nn.Module
    test_loss: float
    test_accuracy: float
    step_losses: list[float] = field(default_factory=list)
    temperatures: TemperatureHistory | None = None
    test_points: int = 0


@dataclass
class AcrossCheckpoints:
    """G at the same test points, validation loss and accuracy, for every checkpoint."""

    steps: list[int]
    spectra: list[PointSpectra]
    val_accuracy: list[float]
    val_loss: list[float] = field(default_factory=list)
    val_points: int = 0

    def to_json(self) -> list[dict[str, Any]]:
        k = self.spectra[0].eigenvalues.shape[1] + 1 if self.spectra else 1
        return [
            {
                "step": st,
                "val_accuracy": acc,
                "val_loss": loss,
                "median_log10_trace": float(np.median(s.log10_trace().numpy())),
                "rank_counts": torch.bincount(s.rank, minlength=k).tolist(),
            }
            for st, s, acc, loss in zip(
                self.steps, self.spectra, self.val_accuracy, self.val_loss, strict=True
            )
        ]


@dataclass
class FoliationOutcome:
    """Walk experiment (paths between pairs, vertical walks) and involutivity at noise points."""

    walk: WalkExperimentResult
    involutivity: InvolutivityResult
    pairs: int
    max_steps: int
    involutivity_points: int

    def to_json(self) -> dict[str, Any]:
        return {"walk": self.walk.to_json(), "involutivity": self.involutivity.to_json()}


@dataclass
class OODOutcome:
    """Detectors fitted on ``fit_points`` training images, scored on ``points`` test images per
    set (the leaf detector on ``leaf_points`` with ``leaf_steps`` path steps); ``skipped``: out
    sets left out, with the reason."""

    results: list[OODResult]
    out_sets: list[str]
    fit_points: int
    points: int
    leaf_points: int = 0
    leaf_steps: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        rows = [
            {"detector": r.detector, "out_dataset": r.out_dataset, "auroc": r.auroc,
             "fpr95": r.fpr95}
            for r in self.results
        ]  # fmt: skip
        return {"rows": rows, "skipped": self.skipped, "points": self.points,
                "leaf_points": self.leaf_points, "leaf_steps": self.leaf_steps}  # fmt: skip


@dataclass
class TransferOutcome:
    """The transfer table on the first ``points`` images of each set; ``skipped`` as in OOD."""

    result: TransferResult
    points: int
    transfer_train_points: int
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "skipped": self.skipped}


@dataclass
class DenoiseOutcome:
    """The denoising benchmark at one noise level ``sigma`` on ``points`` test images."""

    result: DenoiseResult
    points: int
    sigma: float

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json()


@dataclass
class NNKOutcome:
    """Geometry of the run's checkpoints on ``points`` training and ``test_points`` test images."""

    geometry: RunGeometry
    layers: tuple[str, ...]
    points: int
    k: int
    test_points: int

    def to_json(self) -> dict[str, Any]:
        return self.geometry.to_json()


@dataclass
class ThermoOutcome:
    """Filter temperatures of ``layer`` during training and the pruning table.

    Attributes:
        layer: the pruned layer; ``n_groups`` its filters.
        history: the monitor's record (trace per block of steps).
        temperature, l1: per filter: time-averaged temperature (squared weight units per
            step²) and L1 norm of the final weights.
        removed, kept: how many filters the "without k" / "only k" conditions remove / keep.
        rows: one per condition (single run: std 0), accuracy in %, loss in nats, scored on
            ``points`` test images with the filters masked (no retraining).
        spearman_l1: rank correlation of temperature and L1 norm over the filters.
    """

    layer: str
    n_groups: int
    history: TemperatureHistory
    temperature: list[float]
    l1: list[float]
    removed: int
    kept: int
    rows: list[PruningRow]
    points: int
    spearman_l1: float

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "temperature": self.temperature, "l1": self.l1,
            "removed": self.removed, "kept": self.kept, "points": self.points,
            "rows": [r.to_json() for r in self.rows], "spearman_temperature_l1": self.spearman_l1,
            "monitor": self.history.to_json(),
        }  # fmt: skip


class StepLosses(Callback):
    """A :func:`fit` callback keeping the training loss of every optimizer step (nats)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_batch_end(self, step: int, model: nn.Module, optimizer: Any, loss: float) -> None:
        self.losses.append(float(loss))

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = list(state.get("losses", []))


def local_file(key: str, split: str, data_dir: str | None) -> tuple[Path | None, str]:
    """Where the upstream file of a built-in set (``cifar10``, ``cifar100``, ``svhn``) lies on
    the data search path, without downloading: ``(path or None, file name)``."""
    spec = data_registry.IMAGE_DATASETS[key]
    if key in data_registry.CIFAR_LAYOUT:
        name = data_registry.CIFAR_LAYOUT[key][0]
    else:
        name = spec.splits[split][0]
    return find_file(name, candidate_dirs(spec, data_dir)), name


def require_local(key: str, data_dir: str | None) -> None:
    """Raise :class:`DataFileError` in one line naming the file and the search path when the
    upstream file of ``key`` is not on this machine (the demo never downloads it)."""
    path, name = local_file(key, "test", data_dir)
    if path is None:
        spec = data_registry.IMAGE_DATASETS[key]
        roots = ", ".join(str(p) for p in data_search_path(data_dir))
        raise DataFileError(
            f"{spec.title} not found: put {name} (upstream file, not extracted) in one of the "
            f"data folders {roots} (directly or in {spec.subfolder}/), or pass `data_dir=DIR` "
            "/ set LEAFSCOPE_DATA=DIR; the demo does not download it"
        )


def _load(key: str, split: str, cfg: DemoConfig, limit: int | None) -> ImageDataset:
    """A built-in set; CIFAR/SVHN only from local files (no download)."""
    return load_images(
        key, split, data_dir=cfg.data_dir, limit=limit, download=key in ("mnist", "fashion-mnist")
    )


def optional_set(
    key: str, split: str, cfg: DemoConfig, limit: int
) -> tuple[ImageDataset | None, str]:
    """A set used only when present locally: ``(data, "")`` or ``(None, why it is skipped)``."""
    if key not in ("fashion-mnist", "mnist"):
        path, name = local_file(key, split, cfg.data_dir)
        if path is None:
            return None, f"{name} not on the data search path"
    try:
        return _load(key, split, cfg, limit), ""
    except DataFileError as exc:
        return None, str(exc)


def load_demo_data(cfg: DemoConfig) -> DemoData:
    """Train set (first ``cfg.train_limit``) split 90/10 by ``cfg.seed``, and the test set."""
    if cfg.dataset not in DATASETS:
        raise InputError(f"unknown demo data set {cfg.dataset!r}: use one of {DATASETS}")
    if cfg.dataset != "mnist":
        require_local(cfg.dataset, cfg.data_dir)
    train_all = _load(cfg.dataset, "train", cfg, cfg.train_limit)
    test = _load(cfg.dataset, "test", cfg, cfg.test_limit)
    train_idx, val_idx = train_val_split(len(train_all), 0.1, seed=cfg.seed)
    return DemoData(train_all, train_all.subset(train_idx), train_all.subset(val_idx), test)


def train_partially(cfg: DemoConfig, data: DemoData, run_dir: Path) -> Training:
    """``cfg.model`` trained with SGD for ``cfg.epochs``, checkpoints every K steps, the per-step
    loss and the temperature of ``cfg.thermo_layer``'s filters recorded during training."""
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model_for_input(cfg.model, data.train.input_shape, data.train.num_classes)
    losses = StepLosses()
    monitor = TemperatureMonitor({cfg.thermo_layer: "filters"}, snapshot="step", downsample=5)
    result = fit(
        model, data.train, data.val, epochs=cfg.epochs, optimizer="sgd", lr=cfg.lr,
        momentum=cfg.momentum, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
        seed=cfg.seed, device=device, out_dir=run_dir, overwrite=True,
        checkpoint_every_steps=cfg.checkpoint_every_steps, progress=cfg.progress,
        augment=[RandomCrop(4), HorizontalFlip()] if cfg.augment else (),
        callbacks=[losses, monitor],
        meta={"dataset": data.train_all.describe(), "normalization": NORMALIZATION},
    )  # fmt: skip
    final = load_checkpoint(result.checkpoints[-1], device=device)
    test_loss, test_acc = evaluate(final, (data.test.images, data.test.labels), device=device)
    return Training(
        result, final, test_loss, test_acc, losses.losses, monitor.history(), len(data.test)
    )


def spectra_from_rows(rows: dict[str, np.ndarray]) -> PointSpectra:
    """The :class:`PointSpectra` of the rows of a ``spectrum`` task."""
    return PointSpectra(
        eigenvalues=torch.from_numpy(np.asarray(rows["eigenvalues"], dtype=np.float64)),
        trace=torch.from_numpy(np.asarray(rows["trace"], dtype=np.float64)),
        rank=torch.from_numpy(np.asarray(rows["rank"], dtype=np.int64)),
        predicted=torch.from_numpy(np.asarray(rows["predicted"], dtype=np.int64)),
        max_probability=torch.from_numpy(np.asarray(rows["max_probability"], dtype=np.float64)),
    )


def data_and_noise_spectra(
    cfg: DemoConfig, checkpoint: Path, data: DemoData
) -> dict[str, PointSpectra]:
    """Spectra of G at ``cfg.points`` test images (a seeded sample stratified by label) and as
    many uniform-noise images of their shape: two runs of the ``spectrum`` task on the trained
    checkpoint, as ``leafscope spectrum --checkpoint CKPT --points N`` computes them."""
    from leafscope.data.spec import DataSpec
    from leafscope.execution import RunOptions, make_job, run
    from leafscope.models import ModelSpec

    model = ModelSpec(checkpoint=str(checkpoint))
    options = RunOptions(device=cfg.device, progress=cfg.progress)
    sets = {
        f"{data.title} test": DataSpec(name=cfg.dataset, split="test", data_dir=cfg.data_dir),
        "uniform noise": DataSpec(
            name="noise", split="test", seed=cfg.seed, input_shape=tuple(data.test.input_shape)
        ),
    }
    out = {}
    for title, spec in sets.items():
        job = make_job("spectrum", model=model, data=spec, points=cfg.points, seed=cfg.seed)
        out[title] = spectra_from_rows(run(job, options).rows)
    return out


@dataclass
class Notices:
    """What the model notices at a few test points (rows of the ``explore`` task).

    Attributes:
        views: the explore ``view`` records (image, directions, walks) of the shown points.
        titles: one title per shown point (data index, label, prediction).
        predicted: the predicted class of each shown point.
        class_names: names of the classes.
        leaf_change, kernel_change: median over all explored points of the largest move of the
            class probabilities (total variation) along leaf direction 1 and a kernel direction.
        points: explored points (the explorer page holds them all).
        explorer: the explorer page, relative to the demo's folder.
    """

    views: list[dict]
    titles: list[str]
    predicted: list[int]
    class_names: list[str]
    leaf_change: float
    kernel_change: float
    points: int
    explorer: str


def notices_experiment(cfg: DemoConfig, checkpoint: Path, out: Path, shown: int = 3) -> Notices:
    """The ``explore`` task on ``cfg.explore_points`` test images of the final checkpoint,
    through the runner, written as the explorer page ``out/explorer/index.html``; the first
    ``shown`` points go into the report."""
    import json
    import shutil

    from leafscope.data.spec import DataSpec
    from leafscope.execution import RunOptions, make_job, run
    from leafscope.models import ModelSpec

    folder = out / "explorer"
    shutil.rmtree(folder, ignore_errors=True)  # the demo owns its folder: a fresh page
    job = make_job(
        "explore",
        model=ModelSpec(checkpoint=str(checkpoint)),
        data=DataSpec(name=cfg.dataset, split="test", data_dir=cfg.data_dir),
        points=cfg.explore_points,
        seed=cfg.seed,
    )
    rows = run(job, RunOptions(device=cfg.device, progress=cfg.progress), out=folder).rows
    order = np.argsort(-np.asarray(rows["lambda1"], dtype=np.float64), kind="stable")[:shown]
    views = [json.loads(str(rows["view"][i])) for i in order]
    summary = json.loads((folder / "_summary.json").read_text())["summary"]
    names = summary.get("class_names") or [str(c) for c in range(len(views[0]["directions"]))]
    titles = [
        f"#{int(rows['index'][i])}: label {int(rows['label'][i])}, predicted "
        f"{int(rows['predicted'][i])}"
        for i in order
    ]
    return Notices(
        views=views,
        titles=titles,
        predicted=[int(rows["predicted"][i]) for i in order],
        class_names=[str(n) for n in names],
        leaf_change=float(np.nanmedian(np.asarray(rows["leaf_change"], dtype=np.float64))),
        kernel_change=float(np.nanmedian(np.asarray(rows["kernel_change"], dtype=np.float64))),
        points=int(len(rows["unit"])),
        explorer="explorer/index.html",
    )


def information_across_checkpoints(
    cfg: DemoConfig, run_dir: Path, data: DemoData
) -> AcrossCheckpoints:
    """G (rank tolerance :data:`RANK_RTOL`) at the first ``cfg.points_per_checkpoint`` test
    images, and loss / accuracy on ``cfg.val_points`` validation images, for every checkpoint."""
    device = torch.device(cfg.device)
    x_ckpt = data.test.images[: cfg.points_per_checkpoint]
    val = (data.val.images[: cfg.val_points], data.val.labels[: cfg.val_points])
    out = AcrossCheckpoints([], [], [], [], len(val[1]))
    infos = list_checkpoints(run_dir)
    epoch_steps = {i.step for i in infos if i.kind == "epoch"}  # same weights: measure once
    for info in (i for i in infos if i.kind == "epoch" or i.step not in epoch_steps):
        model_k = load_checkpoint(info.path, device=device)
        out.steps.append(info.step)
        out.spectra.append(point_spectra(model_k, x_ckpt, device=device, rtol=RANK_RTOL))
        loss, acc = evaluate(model_k, val, device=device)
        out.val_loss.append(loss)
        out.val_accuracy.append(acc)
    return out


def _masked_score(
    model: nn.Module, layer: str, groups: list[int], test: tuple, device: torch.device
) -> tuple[float, float]:
    """(accuracy %, loss) on ``test`` with ``groups`` of ``layer`` zeroed."""
    with masked(model, layer, groups):
        loss, acc = evaluate(model, test, device=device)
    return 100.0 * acc, loss


def thermo_experiment(cfg: DemoConfig, training: Training, data: DemoData) -> ThermoOutcome:
    """Hot/cold pruning of ``cfg.thermo_layer`` against the L1 norm and a random order: remove
    the k = round(n/3) highest / lowest scored filters, or keep only the n//2 highest / lowest
    (LeNet's conv1: k = 2, keep 3, as in theory §4), no retraining."""
    layer, device = cfg.thermo_layer, torch.device(cfg.device)
    model, history = training.model, training.temperatures
    assert history is not None  # train_partially always records it
    temps = history.temperatures()[layer]
    n = temps.numel()
    removed, kept = max(1, round(n / 3)), max(1, n // 2)
    l1 = magnitude_scores(model, layer)
    points = cfg.pruning_points or len(data.test)
    test = (data.test.images[:points], data.test.labels[:points])
    operations = [("without_{k}_{hi}", "remove", removed, "highest"),
                  ("only_{k}_{hi}", "keep", kept, "highest"),
                  ("without_{k}_{lo}", "remove", removed, "lowest"),
                  ("only_{k}_{lo}", "keep", kept, "lowest")]  # fmt: skip
    scores = {("hottest", "coldest"): temps, ("largest_l1", "smallest_l1"): l1,
              ("random", ""): random_scores(n, 1000 + cfg.seed)}  # fmt: skip
    conditions: dict[str, list[int]] = {"original": []}
    for (hi, lo), s in scores.items():
        for pattern, action, k, end in operations:
            if end == "lowest" and not lo:  # a random order has no "other end" worth a row
                continue
            name = pattern.format(k=k, hi=hi, lo=lo)
            conditions[name] = select_groups(s, k, action, end)
    rows = []
    for name, groups in conditions.items():
        acc, loss = _masked_score(model, layer, groups, test, device)
        rows.append(PruningRow(name, acc, 0.0, loss, 0.0, [acc], [loss]))
    return ThermoOutcome(
        layer,
        n,
        history,
        temps.tolist(),
        l1.tolist(),
        removed,
        kept,
        rows,
        len(test[1]),
        spearman(temps, l1),
    )


def foliation_experiment(
    model: nn.Module,
    test: ImageDataset,
    *,
    pairs: int = 3,
    max_steps: int = 200,
    walk_points: int = 32,
    walk_steps: int = 200,
    involutivity_points: int = 3,
    seed: int = 0,
) -> FoliationOutcome:
    """Adaptive horizontal paths between ``pairs`` test images, vertical walks next to random
    lines at ``walk_points`` images, involutivity at ``involutivity_points`` noise images."""
    exp = walk_experiment(
        model,
        test.images[:1000],
        test.labels[:1000],
        pairs=pairs,
        methods=("adaptive",),
        path_config=PathConfig(method="adaptive", max_steps=max_steps, record_every=5),
        vertical_points=walk_points,
        walk_config=WalkConfig(steps=walk_steps, record_every=max(walk_steps // 10, 1), seed=seed),
        seed=seed,
    )
    noise = noise_like(test.subset(range(involutivity_points)), seed=seed).images
    inv = involutivity(model, noise, inputs="noise")
    return FoliationOutcome(exp, inv, pairs, max_steps, involutivity_points)


def ood_out_sets(
    cfg: DemoConfig, data: DemoData, fashion: ImageDataset | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The out sets and the skipped ones (name → reason).

    MNIST: Fashion-MNIST test images (``fashion``, or the first ``cfg.ood_points``) and uniform
    noise. CIFAR-10: uniform noise, and the SVHN and CIFAR-100 test images when their files
    are on the data search path. Noise: ``cfg.ood_points`` images, seed ``cfg.seed + 1``.
    """
    noise = noise_like(data.test.subset(range(cfg.ood_points)), seed=cfg.seed + 1).images
    outs: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    others = ("fashion-mnist",) if cfg.dataset == "mnist" else ("svhn", "cifar100")
    for key in others:
        found, why = (fashion, "") if key == "fashion-mnist" and fashion is not None else (
            optional_set(key, "test", cfg, cfg.ood_points)
        )  # fmt: skip
        if found is None:
            skipped[key] = why
        else:
            outs[key] = found.images[: cfg.ood_points]
    outs["noise"] = noise
    return outs, skipped


def ood_experiment(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    outs: dict[str, torch.Tensor],
    *,
    fit_points: int = 2000,
    points: int = 300,
    leaf_points: int = 64,
    leaf_steps: int = 10,
    skipped: dict[str, str] | None = None,
) -> OODOutcome:
    """The :data:`OOD_DETECTORS` fitted on ``fit_points`` training images, evaluated on
    ``points`` test images against each out set; the leaf-distance detector (one anchor,
    ``leaf_steps`` path steps) on the first ``leaf_points`` of each (it costs a G per step)."""
    x_fit, y_fit = train.images[:fit_points], train.labels[:fit_points]
    detectors = {name: make_detector(name, model).fit(x_fit, y_fit) for name in OOD_DETECTORS}
    results = evaluate_detectors(detectors, test.images[:points], outs)
    if leaf_points > 0:
        leaf = make_detector(LEAF_DETECTOR, model, max_steps=leaf_steps).fit(x_fit, y_fit)
        small = {name: x[:leaf_points] for name, x in outs.items()}
        results += evaluate_detectors({LEAF_DETECTOR: leaf}, test.images[:leaf_points], small)
    return OODOutcome(
        results, list(outs), len(y_fit), min(points, len(test)), leaf_points, leaf_steps,
        dict(skipped or {}),
    )  # fmt: skip


def transfer_sets(
    cfg: DemoConfig, data: DemoData, fashion: ImageDataset | None = None
) -> tuple[dict[str, tuple[ImageDataset, ImageDataset | None]], dict[str, str]]:
    """(train, test) per set and the skipped sets (name → reason).

    MNIST: MNIST, Fashion-MNIST (``cfg.transfer_train_points`` train images, ``fashion`` or its
    test images as test set), uniform noise. CIFAR-10: CIFAR-10, CIFAR-100 (train / test) and
    SVHN (its test file split in two) when present, uniform noise. Noise: seed ``cfg.seed + 2``,
    no test set.
    """
    n_train, n_val = cfg.transfer_train_points, cfg.transfer_val_points
    noise = noise_like(data.train.subset(range(min(n_train, len(data.train)))), seed=cfg.seed + 2)
    sets: dict[str, tuple[ImageDataset, ImageDataset | None]] = {
        cfg.dataset: (data.train, data.test)
    }
    skipped: dict[str, str] = {}
    others = ("fashion-mnist",) if cfg.dataset == "mnist" else ("cifar100", "svhn")
    for key in others:
        if key == "svhn":
            both, why = optional_set(key, "test", cfg, n_train + n_val)
            found = None if both is None else (
                both.subset(range(min(n_train, len(both) - 1))),
                both.subset(range(min(n_train, len(both) - 1), len(both))),
            )  # fmt: skip
        else:
            train, why = optional_set(key, "train", cfg, n_train)
            test = fashion if key == "fashion-mnist" and fashion is not None else None
            if train is not None and test is None:
                test, why = optional_set(key, "test", cfg, n_val)
            found = None if train is None or test is None else (train, test)
        if found is None:
            skipped[key] = why
        else:
            sets[key] = found
    sets["noise"] = (noise, None)
    return sets, skipped


def transfer_experiment(
    model: nn.Module,
    datasets: dict[str, tuple[ImageDataset, ImageDataset | None]],
    *,
    points: int = 128,
    transfer_train_points: int = 2000,
    transfer_val_points: int = 500,
    skipped: dict[str, str] | None = None,
) -> TransferOutcome:
    """:func:`leafscope.applications.transfer_table` on the first ``points`` images per set."""
    result = transfer_table(
        model,
        datasets,
        points=points,
        transfer_train_points=transfer_train_points,
        transfer_val_points=transfer_val_points,
    )
    return TransferOutcome(result, points, transfer_train_points, dict(skipped or {}))


def denoise_experiment(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    *,
    points: int = 32,
    sigma: float = 0.25,
    pool: int = 3000,
    tune_points: int = 50,
    leaf_steps: int = 20,
) -> DenoiseOutcome:
    """:func:`leafscope.applications.denoise_benchmark` at one ``sigma`` on ``points`` test
    images, nearest clean images from the first ``pool`` training images."""
    result = denoise_benchmark(
        model,
        train.images[:pool],
        test.images[:points],
        test.labels[:points],
        sigmas=(sigma,),
        tune_points=tune_points,
        leaf_steps=leaf_steps,
    )
    return DenoiseOutcome(result, points, sigma)


def nnk_experiment(
    run_dir: str | Path,
    train: ImageDataset,
    test: ImageDataset,
    *,
    layers: tuple[str, ...] = ("conv1", "conv2", "fc1"),
    points: int = 500,
    k: int = 15,
    test_points: int = 2000,
    device: str | torch.device = "cpu",
) -> NNKOutcome:
    """:func:`leafscope.experiments.nnk.run_geometry` on every (epoch and step) checkpoint."""
    k = min(k, points - 2)
    geometry = run_geometry(
        run_dir,
        train.images[:points],
        train.labels[:points],
        list(layers),
        k=k,
        kernel="cosine",
        test_images=test.images[:test_points],
        test_labels=test.labels[:test_points],
        step_checkpoints=True,
        orientation=True,
        device=device,
    )
    return NNKOutcome(geometry, tuple(layers), points, k, min(test_points, len(test)))
