"""Applications of the data leaf: knowledge transfer, OOD detection, denoising, generation."""

from leafscope.applications.denoise import DenoiseResult, DenoiseRow, add_noise, denoise_benchmark
from leafscope.applications.detectors import (
    BASELINES,
    DETECTORS,
    LEAF_BASED,
    DetectorFactory,
    build_detectors,
    detector_names,
    make_detector,
)
from leafscope.applications.generate import LeafWalk, generate_class, leaf_random_walk
from leafscope.applications.leaf import LeafProjection, NearestImages, project_onto_leaf
from leafscope.applications.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, psnr
from leafscope.applications.ood import OODDetector, OODResult, aggregate_seeds, evaluate_detectors
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
from leafscope.applications.transfer import (
    TransferResult,
    TransferRow,
    fit_linear_head,
    spectral_distance,
    transfer_table,
)

__all__ = [
    "aupr_out",
    "aupr_in",
    "LeafPixelDetector",
    "ViMDetector",
    "ReActDetector",
    "MaxLogitDetector",
    "BASELINES",
    "DETECTORS",
    "DetectorFactory",
    "build_detectors",
    "detector_names",
    "DIMSpectrumDetector",
    "DIMTraceDetector",
    "DenoiseResult",
    "DenoiseRow",
    "EnergyDetector",
    "KNNDetector",
    "LEAF_BASED",
    "LeafDistanceDetector",
    "LeafProjection",
    "LeafWalk",
    "MSPDetector",
    "MahalanobisDetector",
    "NearestImages",
    "OODDetector",
    "OODResult",
    "PixelNNDetector",
    "TransferResult",
    "TransferRow",
    "add_noise",
    "aggregate_seeds",
    "auroc",
    "denoise_benchmark",
    "evaluate_detectors",
    "fit_linear_head",
    "fpr_at_tpr",
    "generate_class",
    "leaf_random_walk",
    "make_detector",
    "project_onto_leaf",
    "psnr",
    "spectral_distance",
    "transfer_table",
]
