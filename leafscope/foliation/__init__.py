"""Foliation of the data domain: horizontal paths (on a leaf), vertical walks (across leaves),
the involutivity test by Lie brackets, and the information matrix across training.

Figures live in :mod:`leafscope.report.figures.foliation`; the walk experiment (paths between
random pairs next to vertical walks) in :mod:`leafscope.experiments.foliation`.
"""

from leafscope.foliation.brackets import (
    InvolutivityResult,
    bracket_pairs,
    fisher_involutivity,
    involutivity,
    lie_brackets,
    parameter_lie_brackets,
)
from leafscope.foliation.equilibrium import TraceRankResult, trace_rank_across_checkpoints
from leafscope.foliation.paths import (
    METHODS,
    PathConfig,
    PathResult,
    PathState,
    continue_paths,
    horizontal_paths,
    random_pairs,
    start_paths,
)
from leafscope.foliation.walks import (
    NoiseLeafResult,
    WalkConfig,
    WalkResult,
    flip_horizontal,
    noise_leaf,
    path_to_flipped,
    random_line_accuracy,
    total_variation,
    vertical_walk,
)

__all__ = [
    "METHODS",
    "InvolutivityResult",
    "NoiseLeafResult",
    "PathConfig",
    "PathResult",
    "PathState",
    "TraceRankResult",
    "WalkConfig",
    "WalkResult",
    "bracket_pairs",
    "continue_paths",
    "fisher_involutivity",
    "flip_horizontal",
    "horizontal_paths",
    "involutivity",
    "lie_brackets",
    "noise_leaf",
    "parameter_lie_brackets",
    "path_to_flipped",
    "random_line_accuracy",
    "random_pairs",
    "start_paths",
    "total_variation",
    "trace_rank_across_checkpoints",
    "vertical_walk",
]
