"""NNK neighbourhood graphs, manifold graph metrics and the analyses built on them.

The runs across checkpoints (geometry per epoch, CW-DeepNNK against validation early stopping)
are the ``nnk`` and ``early-stopping`` tasks (:mod:`leafscope.tasks`); the figures in
:mod:`leafscope.report.figures.nnk`.
"""

from leafscope.nnk.geometry import layer_geometry, loo_test_correlation
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.index import knn_recall
from leafscope.nnk.interpolation import NNKClassifier, nnk_vote
from leafscope.nnk.invariance import (
    AugmentationGeometry,
    augmentation_geometry,
    rotation_invariance,
)
from leafscope.nnk.metrics import ManifoldGraphMetrics, manifold_graph_metrics, summarize
from leafscope.nnk.propagation import compare_propagation, harmonic_propagation, knn_weights
from leafscope.nnk.solver import solve_nnqp, solve_nnqp_single
from leafscope.nnk.stability import EdgeOverlap, edge_overlap, geometric_stability, mgm_distances
from leafscope.nnk.stopping import (
    ChannelEarlyStopping,
    ChannelStoppingRule,
    channel_loo_errors,
    compare_early_stopping,
    train_with_channel_stopping,
    validation_stopping_epoch,
)

__all__ = [
    "AugmentationGeometry",
    "EdgeOverlap",
    "augmentation_geometry",
    "edge_overlap",
    "geometric_stability",
    "mgm_distances",
    "rotation_invariance",
    "ChannelEarlyStopping",
    "ChannelStoppingRule",
    "ManifoldGraphMetrics",
    "NNKClassifier",
    "NNKGraph",
    "channel_loo_errors",
    "compare_early_stopping",
    "compare_propagation",
    "harmonic_propagation",
    "knn_recall",
    "knn_weights",
    "layer_geometry",
    "loo_test_correlation",
    "manifold_graph_metrics",
    "nnk_vote",
    "solve_nnqp",
    "solve_nnqp_single",
    "summarize",
    "train_with_channel_stopping",
    "validation_stopping_epoch",
]
