"""The OOD protocol of issue 14: every detector, several seeds, two training regimes, fair
leaf-based scores.

- :data:`TRAINING` — the two model settings: ``converged`` (LeNet on MNIST near its plateau:
  two epochs, momentum 0.9, the LR divided by 10 after the first; the OOD literature's setting)
  and ``partial`` (120 steps with momentum 0.9, an eighth of an epoch: partially trained).
- :func:`train_models` — train (or reuse) one model per seed and setting with
  :func:`leafscope.training.fit`.
- :func:`out_sets` — the reported out sets (Fashion-MNIST, uniform noise, scikit-learn digits,
  rotated MNIST by 90°, KMNIST / EMNIST letters when their files are present) and the
  *validation* out set (Gaussian-blurred MNIST training images), which is never reported: the
  only place a leaf-based score may be tuned.
- :func:`run_protocol` — fit every detector on in-distribution training points, score the
  in-distribution test points and every out set, per model; AUROC, FPR95, AUPR-in and AUPR-out,
  aggregated over seeds per setting.

CIFAR-10 against SVHN / CIFAR-100 is the same protocol with ``in_dataset="cifar10"`` and a
``cifar`` architecture; it runs only when those files are present (:func:`out_sets` skips
missing sets with a note).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.errors import DataFileError, InputError

__all__ = [
    "TRAINING",
    "ProtocolResult",
    "blurred",
    "out_sets",
    "run_protocol",
    "train_models",
]

#: Training settings: keyword arguments of :func:`leafscope.training.fit` per setting.
TRAINING: dict[str, dict[str, Any]] = {
    "converged": {"epochs": 2, "lr": 0.02, "momentum": 0.9, "lr_step": 1, "lr_gamma": 0.1},
    "partial": {"epochs": 1, "lr": 0.01, "momentum": 0.9, "max_steps_per_epoch": 120},
}


def train_models(
    settings: list[str],
    seeds: list[int],
    runs_dir: str | os.PathLike,
    *,
    in_dataset: str = "mnist",
    arch: str = "lenet",
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, list[Path]]:
    """Train one model per (setting, seed), or reuse the final checkpoint of an earlier run.

    Args:
        settings: keys of :data:`TRAINING`.
        seeds: training seeds (the weights, the batch order and the 90/10 train/val split).
        runs_dir: runs go to ``runs_dir/{in_dataset}-{arch}-{setting}-s{seed}``.
        in_dataset, arch: data set and :func:`leafscope.models.build_model` architecture.
        data_dir: folder searched first for the data files.
        device: where to train.

    Returns:
        ``{setting: [final checkpoint per seed]}``.
    """
    from leafscope.data import load_images, train_val_split
    from leafscope.models import build_model
    from leafscope.training import fit

    unknown = [s for s in settings if s not in TRAINING]
    if unknown:
        raise InputError(f"unknown training settings {unknown}: use some of {list(TRAINING)}")
    data = load_images(in_dataset, "train", data_dir=data_dir)
    out: dict[str, list[Path]] = {}
    for setting in settings:
        out[setting] = []
        for seed in seeds:
            run = Path(runs_dir) / f"{in_dataset}-{arch}-{setting}-s{seed}"
            epochs = TRAINING[setting]["epochs"]
            final = run / f"epoch_{epochs:04d}.pt"
            if not final.exists():
                tr, va = train_val_split(len(data), 0.1, seed)
                torch.manual_seed(seed)
                model = build_model(arch, num_classes=data.num_classes)
                result = fit(
                    model,
                    (data.images[tr], data.labels[tr]),
                    (data.images[va], data.labels[va]),
                    seed=seed,
                    device=device,
                    out_dir=run,
                    overwrite=True,
                    progress=False,
                    meta={"data": in_dataset, "setting": setting},
                    **TRAINING[setting],
                )
                acc = result.history[-1]["val_accuracy"]
                print(f"{setting} seed {seed}: val accuracy {acc:.4f}", flush=True)
                final = result.checkpoints[-1]
            out[setting].append(final)
    return out
