"""The one detector registry: every OOD detector by name, with its family and the shared
settings it reads.

Every list of detector names (the ``ood`` command's choices and defaults, the protocol's
baselines, the baseline / leaf-based split) is read from :data:`DETECTORS`; a new detector is
one :class:`DetectorFactory` entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from leafscope.applications import ood_baselines as baselines
from leafscope.applications import ood_leaf as leaf
from leafscope.applications.ood import OODDetector
from leafscope.errors import InputError

__all__ = [
    "BASELINES",
    "DETECTORS",
    "FAMILIES",
    "LEAF_BASED",
    "DetectorFactory",
    "build_detectors",
    "check_detector_names",
    "detector_names",
    "make_detector",
]

#: Detector families: ``baseline`` (outputs and penultimate features of the classifier, or the
#: pixel distance) and ``leaf`` (the information matrix G or the data leaf).
FAMILIES = ("baseline", "leaf")


@dataclasses.dataclass(frozen=True)
class DetectorFactory:
    """One registry entry: builds its detector for a model.

    Attributes:
        name: the registered name (also the name of the results' rows).
        cls: the :class:`OODDetector` class.
        family: ``baseline`` or ``leaf`` (see :data:`FAMILIES`).
        summary: one line saying what the score is.
        options: constructor options fixed by this entry (a variant such as Mahalanobis with
            Ledoit-Wolf shrinkage is the same class with other options).
        settings: shared setting name -> the constructor keyword it sets (e.g. ``knn_k -> k``):
            what :meth:`build` reads from a settings mapping.
    """

    name: str
    cls: type[OODDetector]
    family: str
    summary: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def slow(self) -> bool:
        """The detector evaluates G, leaf paths or a pixel search per point: its ``fit`` and
        ``score_samples`` take ``progress`` (a bar over the batches of points)."""
        from leafscope.applications.ood import takes_progress

        return takes_progress(self.cls.fit)

    def __call__(self, model: nn.Module, **kwargs: Any) -> OODDetector:
        """The detector for ``model``; ``kwargs`` override :attr:`options`."""
        try:
            return self.cls(model, **{**self.options, **kwargs})
        except TypeError as exc:
            raise InputError(f"bad option for detector {self.name!r}: {exc}") from exc

    def build(
        self,
        model: nn.Module,
        settings: Mapping[str, Any] | None = None,
        *,
        random_state: int | None = 0,
        **kwargs: Any,
    ) -> OODDetector:
        """The detector with the shared ``settings`` it reads (others are ignored) and a
        ``random_state``."""
        chosen = {self.settings[k]: v for k, v in (settings or {}).items() if k in self.settings}
        return self(model, random_state=random_state, **chosen, **kwargs)


_LEAF_PATHS = {"leaf_steps": "max_steps", "leaf_anchors": "n_anchors"}

#: Every detector, by name, in the order the results list them.
DETECTORS: dict[str, DetectorFactory] = {
    f.name: f
    for f in (
        DetectorFactory("msp", baselines.MSPDetector, "baseline", "maximum softmax probability"),
        DetectorFactory("maxlogit", baselines.MaxLogitDetector, "baseline", "the largest logit"),
        DetectorFactory("energy", baselines.EnergyDetector, "baseline", "T logsumexp(logits/T)"),
        DetectorFactory(
            "react",
            baselines.ReActDetector,
            "baseline",
            "energy after clipping the penultimate features at their 90th percentile",
            options={"percentile": 90.0},
        ),
        DetectorFactory(
            "vim", baselines.ViMDetector, "baseline", "energy minus the feature residual"
        ),
        DetectorFactory(
            "mahalanobis",
            baselines.MahalanobisDetector,
            "baseline",
            "class Gaussians with a tied covariance on the penultimate features",
        ),
        DetectorFactory(
            "mahalanobis-lw",
            baselines.MahalanobisDetector,
            "baseline",
            "Mahalanobis with a Ledoit-Wolf shrunk covariance",
            options={"shrinkage": "ledoit-wolf"},
        ),
        DetectorFactory(
            "knn",
            baselines.KNNDetector,
            "baseline",
            "minus the distance to the k-th nearest normalised training feature",
            options={"k": 50},
            settings={"knn_k": "k"},
        ),
        DetectorFactory(
            "pixel-nn",
            leaf.PixelNNDetector,
            "baseline",
            "minus the pixel distance to the nearest training image",
        ),
        DetectorFactory("dim-trace", leaf.DIMTraceDetector, "leaf", "minus log10 tr G(x)"),
        DetectorFactory(
            "dim-spectrum",
            leaf.DIMSpectrumDetector,
            "leaf",
            "density of the log-spectrum of G at training points",
            settings={"spectrum_method": "method", "knn_k": "k"},
        ),
        DetectorFactory(
            "leaf-distance",
            leaf.LeafDistanceDetector,
            "leaf",
            "minus the distance to the data leaf reached by horizontal paths",
            settings=_LEAF_PATHS,
        ),
        DetectorFactory(
            "leaf-pixel",
            leaf.LeafPixelDetector,
            "leaf",
            "leaf distance blended with the pixel distance, each on the training scale",
            settings={**_LEAF_PATHS, "leaf_scale_points": "n_scale_points"},
        ),
    )
}


def detector_names(family: str | None = None) -> tuple[str, ...]:
    """The registered names (of one ``family``), in registry order."""
    if family is not None and family not in FAMILIES:
        raise InputError(f"unknown detector family {family!r}: use one of {', '.join(FAMILIES)}")
    return tuple(n for n, f in DETECTORS.items() if family is None or f.family == family)


#: Names of the baselines and of the leaf-based detectors (read from :data:`DETECTORS`).
BASELINES = detector_names("baseline")
LEAF_BASED = detector_names("leaf")


def check_detector_names(names: Any, what: str = "detectors") -> tuple[str, ...]:
    """``names`` as a tuple of registered names (InputError naming ``what`` otherwise)."""
    names = tuple(names)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise InputError(
            f"{what}: unknown detector(s) {unknown or '(none given)'}: use some of "
            f"{', '.join(DETECTORS)}"
        )
    return names


def make_detector(name: str, model: nn.Module, **kwargs: Any) -> OODDetector:
    """A detector by name (see :data:`DETECTORS`); ``kwargs`` go to its constructor."""
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}: use one of {', '.join(DETECTORS)}")
    return DETECTORS[name](model, **kwargs)


def build_detectors(
    names: Any,
    model: nn.Module,
    settings: Mapping[str, Any] | None = None,
    *,
    random_state: int | None = 0,
) -> dict[str, OODDetector]:
    """Unfitted detectors ``names`` for ``model`` with the shared ``settings`` (see
    :meth:`DetectorFactory.build`)."""
    return {
        n: DETECTORS[n].build(model, settings, random_state=random_state)
        for n in check_detector_names(names)
    }
