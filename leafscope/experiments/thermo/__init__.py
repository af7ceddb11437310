"""Reproductions of the temperature-pruning experiments (LeNet-5 / MNIST, GCN / Planetoid)."""

from leafscope.experiments.thermo.common import PruningRow
from leafscope.experiments.thermo.gnn import CurvePoint, GnnThermoResult, run_gnn_experiment
from leafscope.experiments.thermo.lenet import LenetThermoResult, run_lenet_experiment

__all__ = [
    "CurvePoint",
    "GnnThermoResult",
    "LenetThermoResult",
    "PruningRow",
    "run_gnn_experiment",
    "run_lenet_experiment",
]
