"""Detector registry: build any OOD detector by name."""

from __future__ import annotations

from torch import nn

from leafscope.applications.ood import OODDetector
from leafscope.applications.ood_baselines import (
    EnergyDetector,
    KNNDetector,
    MahalanobisDetector,
    MaxLogitDetector,
    MSPDetector,
    ReActDetector,
    ViMDetector,
)
from leafscope.applications.ood_leaf import (
    DIMSpectrumDetector,
    DIMTraceDetector,
    LeafDistanceDetector,
    LeafPixelDetector,
    PixelNNDetector,
)
from leafscope.errors import InputError

__all__ = ["BASELINES", "DETECTORS", "LEAF_BASED", "make_detector"]

DETECTORS: dict[str, type[OODDetector]] = {
    cls.name: cls
    for cls in (
        MSPDetector,
        MaxLogitDetector,
        EnergyDetector,
        ReActDetector,
        ViMDetector,
        MahalanobisDetector,
        KNNDetector,
        PixelNNDetector,
        DIMTraceDetector,
        DIMSpectrumDetector,
        LeafDistanceDetector,
        LeafPixelDetector,
    )
}
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
