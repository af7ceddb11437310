"""Invariance of a representation, measured by the NNK polytope of an input's augmented versions.

For an input x and its augmented versions x_1 … x_A (e.g. rotations), take the features f of one
layer, L2-normalised (so distances lie in [0, 2] and layers and models compare), and solve the NNK
problem of f(x) with the versions as candidates (cosine kernel ½ + ½cos). The **polytope
diameter** is the largest distance between two selected versions; ``spread`` is the largest
distance between any two of x, x_1 … x_A. A representation invariant to the augmentation maps
every version to (nearly) the same point: small diameter and spread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.data.transforms import rotate
from leafscope.errors import InputError
from leafscope.models.features import layer_features
from leafscope.nnk.graph import local_kernels, prepare_features
from leafscope.nnk.solver import solve_nnqp

__all__ = [
    "AugmentationGeometry",
    "augmentation_geometry",
    "rotation_invariance",
]

INPUT = "input"


@dataclass
class AugmentationGeometry:
    """Per-input geometry of the augmented versions at one layer (arrays of shape (N,))."""

    layer: str
    diameter: np.ndarray
    spread: np.ndarray
    n_selected: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean and median diameter and spread, mean number of selected versions."""
        return {
            "diameter_mean": float(self.diameter.mean()),
            "diameter_median": float(np.median(self.diameter)),
            "spread_mean": float(self.spread.mean()),
            "spread_median": float(np.median(self.spread)),
            "n_selected_mean": float(self.n_selected.mean()),
        }

    def to_json(self) -> dict[str, Any]:
        """The summary and the per-input arrays (``diameter``, ``spread``, ``n_selected``)."""
        return {
            "layer": self.layer,
            **self.summary(),
            "diameter": self.diameter.tolist(),
            "spread": self.spread.tolist(),
            "n_selected": self.n_selected.tolist(),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AugmentationGeometry:
        """The geometry :meth:`to_json` wrote."""
        return cls(
            str(record["layer"]),
            np.asarray(record["diameter"], dtype=np.float64),
            np.asarray(record["spread"], dtype=np.float64),
            np.asarray(record["n_selected"], dtype=np.int64),
        )


def _polytopes(
    center: np.ndarray, versions: np.ndarray, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, ...]:
    """NNK of each center among its own versions. center (B, D), versions (B, A, D), prepared;
    the kernels and the solve run on ``device``, the results are CPU numpy arrays."""
    B, A, D = versions.shape
    dev = torch.device(device)
    Z = torch.from_numpy(np.ascontiguousarray(versions.reshape(B * A, D))).to(dev)
    idx = torch.arange(B * A).view(B, A).to(dev)
    K, kb, _ = local_kernels(Z, torch.from_numpy(center).to(dev), idx, "cosine", None)
    theta = solve_nnqp(K, kb).cpu().numpy()
    V = torch.from_numpy(versions).double()
    d = torch.cdist(V, V).numpy()  # (B, A, A)
    sel = theta > 0
    both = sel[:, :, None] & sel[:, None, :]
    diameter = np.where(both, d, 0.0).max(axis=(1, 2))
    to_center = np.linalg.norm(versions.astype(np.float64) - center[:, None, :], axis=2)
    spread = np.maximum(d.max(axis=(1, 2)), to_center.max(axis=1))
    return diameter, spread, sel.sum(1)


def augmentation_geometry(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str],
    augment: Callable[[torch.Tensor], list[torch.Tensor]],
    *,
    include_input: bool = True,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> dict[str, AugmentationGeometry]:
    """Polytope diameter of the features of each input's augmented versions, per layer.

    Args:
        model: any ``nn.Module``; images: (N, ...) inputs.
        layers: layer names (see :func:`leafscope.models.inspect.module_names`).
        augment: maps a batch (B, ...) to a list of A ≥ 2 batches of the same shape (the versions).
        include_input: also measure the inputs themselves (key ``"input"``), the reference a
            layer's features are compared with.
        batch_size: inputs per batch (each brings A versions).
        device: where the forward passes and the NNK solves run.

    Returns:
        ``{layer: AugmentationGeometry}`` (``"input"`` first when included).
    """
    if images.shape[0] < 1:
        raise InputError("images is empty: pass at least one input")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    names = ([INPUT] if include_input else []) + list(layers)
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {name: [] for name in names}
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        versions = augment(x)
        if len(versions) < 2 or any(v.shape != x.shape for v in versions):
            raise InputError(
                f"augment must return a list of at least 2 batches shaped like its input "
                f"{tuple(x.shape)}, got {[tuple(v.shape) for v in versions]}"
            )
        stacked = torch.cat([x, *versions])
        feats = layer_features(model, stacked, list(layers), device=device) if layers else {}
        if include_input:
            feats[INPUT] = stacked.reshape(stacked.shape[0], -1).float()
        B, A = x.shape[0], len(versions)
        for name in names:
            Z = prepare_features(feats[name], "cosine")
            center, vers = Z[:B], Z[B:].reshape(A, B, -1).transpose(1, 0, 2)
            parts[name].append(_polytopes(center, np.ascontiguousarray(vers), device))
    return {
        name: AugmentationGeometry(
            name, *(np.concatenate([p[i] for p in parts[name]]) for i in range(3))
        )
        for name in names
    }


def rotation_invariance(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str],
    angles: Sequence[float] = (-45, -30, -15, 15, 30, 45),
    **kwargs: Any,
) -> dict[str, AugmentationGeometry]:
    """:func:`augmentation_geometry` with rotations of (N, C, H, W) images by ``angles`` degrees.

    Args:
        angles: at least 2 rotation angles in degrees, none a multiple of 360 (a version equal
            to the input would be its own NNK polytope).
        **kwargs: passed to :func:`augmentation_geometry`.

    Examples:
        >>> from leafscope.testing import tiny_cnn
        >>> r = rotation_invariance(tiny_cnn(), torch.rand(5, 1, 8, 8), ["4"], angles=(90, 180))
        >>> sorted(r)
        ['4', 'input']
    """
    angles = [float(a) for a in angles]
    if len(angles) < 2 or any(a % 360 == 0 for a in angles):
        raise InputError(
            f"angles must hold at least 2 angles, none a multiple of 360, got {angles}"
        )
    return augmentation_geometry(
        model, images, layers, lambda x: [rotate(x, a) for a in angles], **kwargs
    )
