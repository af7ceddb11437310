"""NNK neighbourhood graphs, manifold graph metrics and the analyses built on them."""

from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.interpolation import NNKClassifier, nnk_vote
from leafscope.nnk.metrics import ManifoldGraphMetrics, manifold_graph_metrics, summarize
from leafscope.nnk.propagation import compare_propagation, harmonic_propagation, knn_weights
from leafscope.nnk.solver import solve_nnqp, solve_nnqp_single

__all__ = [
    "ManifoldGraphMetrics",
    "NNKClassifier",
    "NNKGraph",
    "compare_propagation",
    "harmonic_propagation",
    "knn_weights",
    "manifold_graph_metrics",
    "nnk_vote",
    "solve_nnqp",
    "solve_nnqp_single",
    "summarize",
]
