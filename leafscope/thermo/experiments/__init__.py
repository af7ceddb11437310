"""Reproductions of the temperature-pruning experiments (LeNet-5 / MNIST, GCN / Planetoid)."""

from leafscope.thermo.experiments.common import PruningRow
from leafscope.thermo.experiments.gnn import CurvePoint, GnnThermoResult, run_gnn_experiment
from leafscope.thermo.experiments.lenet import LenetThermoResult, run_lenet_experiment

__all__ = [
    "CurvePoint",
    "GnnThermoResult",
    "LenetThermoResult",
    "PruningRow",
    "run_gnn_experiment",
    "run_lenet_experiment",
]
