"""Detector registry: build any OOD detector by name."""

from __future__ import annotations

from torch import nn

from leafscope.applications.ood import OODDetector
from leafscope.applications.ood_baselines import (
    EnergyDetector,
    KNNDetector,
    MahalanobisDetector,
    MSPDetector,
)
from leafscope.applications.ood_leaf import (
    DIMSpectrumDetector,
    DIMTraceDetector,
    LeafDistanceDetector,
    PixelNNDetector,
)
from leafscope.errors import InputError

__all__ = ["BASELINES", "DETECTORS", "LEAF_BASED", "make_detector"]

DETECTORS: dict[str, type[OODDetector]] = {
    cls.name: cls
    for cls in (
        MSPDetector,
        EnergyDetector,
        MahalanobisDetector,
        KNNDetector,
        PixelNNDetector,
        DIMTraceDetector,
        DIMSpectrumDetector,
        LeafDistanceDetector,
    )
}
BASELINES = ("msp", "energy", "mahalanobis", "knn", "pixel-nn")
LEAF_BASED = ("dim-trace", "dim-spectrum", "leaf-distance")


def make_detector(name: str, model: nn.Module, **kwargs) -> OODDetector:
    """A detector by name (see ``DETECTORS``); ``kwargs`` go to its constructor."""
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}: use one of {', '.join(DETECTORS)}")
    try:
        return DETECTORS[name](model, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad option for detector {name!r}: {exc}") from exc
