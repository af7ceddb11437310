"""Detector registry: build any OOD detector by name."""

from __future__ import annotations

from torch import nn

from leafscope.applications import ood_baselines as baselines
from leafscope.applications import ood_leaf as leaf
from leafscope.applications.ood import OODDetector
from leafscope.errors import InputError

__all__ = ["BASELINES", "DETECTORS", "LEAF_BASED", "make_detector"]

_CLASSES: tuple[type[OODDetector], ...] = (
    baselines.MSPDetector, baselines.MaxLogitDetector, baselines.EnergyDetector,
    baselines.ReActDetector, baselines.ViMDetector, baselines.MahalanobisDetector,
    baselines.KNNDetector, leaf.PixelNNDetector, leaf.DIMTraceDetector, leaf.DIMSpectrumDetector,
    leaf.LeafDistanceDetector, leaf.LeafPixelDetector,
)  # fmt: skip
DETECTORS: dict[str, type[OODDetector]] = {cls.name: cls for cls in _CLASSES}
BASELINES = ("msp", "maxlogit", "energy", "react", "vim", "mahalanobis", "knn", "pixel-nn")
LEAF_BASED = ("dim-trace", "dim-spectrum", "leaf-distance", "leaf-pixel")


def make_detector(name: str, model: nn.Module, **kwargs) -> OODDetector:
    """A detector by name (see ``DETECTORS``); ``kwargs`` go to its constructor."""
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}: use one of {', '.join(DETECTORS)}")
    try:
        return DETECTORS[name](model, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad option for detector {name!r}: {exc}") from exc
