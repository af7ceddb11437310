"""The measurements of the demo: partial LeNet-5 training on real MNIST, the spectra of G on
data and noise points, G across the checkpoints, and small versions of the feature commands.

Each step is a function returning a plain result object; :func:`leafscope.demo.run_demo` runs
them in order and hands the results to :mod:`leafscope.report.demo_sections`, which only renders.
"""

from __future__ import annotations

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
from leafscope.experiments.foliation import WalkExperimentResult, walk_experiment
from leafscope.experiments.nnk import RunGeometry, run_geometry
from leafscope.foliation import InvolutivityResult, PathConfig, WalkConfig, involutivity
from leafscope.information import point_spectra
from leafscope.information.spectrum import PointSpectra
from leafscope.models import build_model
from leafscope.training import FitResult, evaluate, fit, list_checkpoints, load_checkpoint

NORMALIZATION = "pixels/255 in [0, 1], no mean/std normalisation"
# Rank tolerance of the across-training figure: eigenvalues >= 1e-6 λ1 (singular values of the
# factor >= 1e-3 σ1), a resolution at which saturation is visible (NumPy's default counts 9).
RANK_RTOL = 1e-3
OOD_DETECTORS = ("msp", "energy", "mahalanobis", "knn", "dim-trace")


@dataclass
class DemoConfig:
    """Settings of the demo (defaults: about 2-3 minutes on 2 CPU cores).

    Attributes:
        out: output folder (report.html, results.json, run/ with checkpoints).
        device: torch device for training and analysis.
        epochs: training epochs (SGD, lr 0.01, momentum 0.9; one epoch is partial training on
            purpose, so G has not collapsed, cf. theory §1 "saturation").
        train_limit: use only the first N training images (None = all 60000 minus validation).
        checkpoint_every_steps: extra checkpoints for the across-training figure.
        points: MNIST test points (and as many noise points) for the spectra.
        points_per_checkpoint: test points per checkpoint for the trace/rank figure.
        ood_points: points per set (MNIST test, Fashion-MNIST, noise) in the OOD section.
        quick: shrink the feature sections (one short path, few walks): a smoke run.
        seed: seeds initialisation, split, batch order and noise.
        data_dir: extra data folder searched first.
    """

    out: Path = Path("leafscope-demo")
    device: str = "cpu"
    epochs: int = 1
    train_limit: int | None = None
    checkpoint_every_steps: int = 100
    points: int = 256
    points_per_checkpoint: int = 64
    ood_points: int = 256
    quick: bool = False
    seed: int = 0
    data_dir: str | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)


@dataclass
class DemoData:
    """MNIST for the demo: all loaded training images, their train / validation split, test."""

    train_all: ImageDataset
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


@dataclass
class Training:
    """The partial training run and its final checkpoint (loss in nats, accuracy in [0, 1])."""

    fit_result: FitResult
    model: nn.Module
    test_loss: float
    test_accuracy: float


@dataclass
class AcrossCheckpoints:
    """G at the same test points for every checkpoint of the run (oldest first)."""

    steps: list[int]
    spectra: list[PointSpectra]
    val_accuracy: list[float]

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "step": st,
                "val_accuracy": acc,
                "median_log10_trace": float(np.median(s.log10_trace().numpy())),
                "rank_counts": torch.bincount(s.rank, minlength=10).tolist(),
            }
            for st, s, acc in zip(self.steps, self.spectra, self.val_accuracy, strict=True)
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
    """Detectors fitted on ``fit_points`` training images, scored on ``points`` test images."""

    results: list[OODResult]
    out_sets: list[str]
    fit_points: int
    points: int

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"detector": r.detector, "out_dataset": r.out_dataset, "auroc": r.auroc,
             "fpr95": r.fpr95}
            for r in self.results
        ]  # fmt: skip


@dataclass
class TransferOutcome:
    """The transfer table on the first ``points`` images of each set."""

    result: TransferResult
    points: int
    transfer_train_points: int

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json()


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


def load_demo_data(cfg: DemoConfig) -> DemoData:
    """MNIST train (first ``cfg.train_limit``) split 90/10 by ``cfg.seed``, and MNIST test."""
    train_all = load_images("mnist", "train", data_dir=cfg.data_dir, limit=cfg.train_limit)
    test = load_images("mnist", "test", data_dir=cfg.data_dir)
    train_idx, val_idx = train_val_split(len(train_all), 0.1, seed=cfg.seed)
    return DemoData(train_all, train_all.subset(train_idx), train_all.subset(val_idx), test)


def train_partially(cfg: DemoConfig, data: DemoData, run_dir: Path) -> Training:
    """LeNet-5 (ReLU), SGD lr 0.01 momentum 0.9 batch 64, checkpoints every K steps."""
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model("lenet", activation="relu", num_classes=10)
    result = fit(
        model,
        data.train,
        data.val,
        epochs=cfg.epochs,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=64,
        seed=cfg.seed,
        device=device,
        out_dir=run_dir,
        overwrite=True,
        checkpoint_every_steps=cfg.checkpoint_every_steps,
        progress=cfg.progress,
        meta={"dataset": data.train_all.describe(), "normalization": NORMALIZATION},
    )
    final = load_checkpoint(result.checkpoints[-1], device=device)
    test_loss, test_acc = evaluate(final, (data.test.images, data.test.labels), device=device)
    return Training(result, final, test_loss, test_acc)


def data_and_noise_spectra(
    cfg: DemoConfig, model: nn.Module, test: ImageDataset
) -> dict[str, PointSpectra]:
    """Spectra of G at the first ``cfg.points`` test images and as many uniform-noise images."""
    device = torch.device(cfg.device)
    x_data = test.images[: cfg.points]
    x_noise = noise_like(test.subset(range(cfg.points)), seed=cfg.seed).images
    return {
        "MNIST test": point_spectra(model, x_data, device=device, progress=cfg.progress),
        "uniform noise": point_spectra(model, x_noise, device=device, progress=cfg.progress),
    }


def information_across_checkpoints(
    cfg: DemoConfig, run_dir: Path, data: DemoData
) -> AcrossCheckpoints:
    """G (rank tolerance :data:`RANK_RTOL`) at the first ``cfg.points_per_checkpoint`` test
    images, and the accuracy on 2000 validation images, for every checkpoint of the run."""
    device = torch.device(cfg.device)
    x_ckpt = data.test.images[: cfg.points_per_checkpoint]
    val = (data.val.images[:2000], data.val.labels[:2000])
    out = AcrossCheckpoints([], [], [])
    for info in list_checkpoints(run_dir):
        model_k = load_checkpoint(info.path, device=device)
        out.steps.append(info.step)
        out.spectra.append(point_spectra(model_k, x_ckpt, device=device, rtol=RANK_RTOL))
        out.val_accuracy.append(evaluate(model_k, val, device=device)[1])
    return out


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
    cfg: DemoConfig, test: ImageDataset, fashion: ImageDataset
) -> dict[str, torch.Tensor]:
    """The out sets: the Fashion-MNIST test images given and ``cfg.ood_points`` uniform-noise
    images (seed ``cfg.seed + 1``)."""
    noise = noise_like(test.subset(range(cfg.ood_points)), seed=cfg.seed + 1).images
    return {"fashion-mnist": fashion.images, "noise": noise}


def ood_experiment(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    outs: dict[str, torch.Tensor],
    *,
    fit_points: int = 2000,
    points: int = 300,
) -> OODOutcome:
    """The :data:`OOD_DETECTORS` fitted on ``fit_points`` training images, evaluated on
    ``points`` test images against each out set."""
    detectors = {
        name: make_detector(name, model).fit(train.images[:fit_points], train.labels[:fit_points])
        for name in OOD_DETECTORS
    }
    results = evaluate_detectors(detectors, test.images[:points], outs)
    return OODOutcome(results, list(outs), fit_points, points)


def transfer_sets(
    cfg: DemoConfig, data: DemoData, fashion: ImageDataset
) -> dict[str, tuple[ImageDataset, ImageDataset | None]]:
    """(train, test) per set: MNIST, Fashion-MNIST (3000 train images; ``fashion`` as its test
    set), uniform noise (seed ``cfg.seed + 2``, no test set)."""
    noise = noise_like(data.train.subset(range(min(3000, len(data.train)))), seed=cfg.seed + 2)
    return {
        "mnist": (data.train, data.test),
        "fashion-mnist": (
            load_images("fashion-mnist", "train", data_dir=cfg.data_dir, limit=3000),
            fashion,
        ),
        "noise": (noise, None),
    }


def transfer_experiment(
    model: nn.Module,
    datasets: dict[str, tuple[ImageDataset, ImageDataset | None]],
    *,
    points: int = 128,
    transfer_train_points: int = 2000,
) -> TransferOutcome:
    """:func:`leafscope.applications.transfer_table` with 500 validation images per set."""
    result = transfer_table(
        model,
        datasets,
        points=points,
        transfer_train_points=transfer_train_points,
        transfer_val_points=500,
    )
    return TransferOutcome(result, points, transfer_train_points)


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
    return NNKOutcome(geometry, tuple(layers), points, k, test_points)
