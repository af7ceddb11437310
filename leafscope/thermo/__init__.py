"""Thermodynamics of SGD (theory §4): temperature of filters / neurons / input features and
temperature-based pruning."""

from leafscope.thermo.groups import LayerGroups, resolve_layer
from leafscope.thermo.monitor import TemperatureHistory, TemperatureMonitor, optimizer_settings

__all__ = [
    "LayerGroups",
    "TemperatureHistory",
    "TemperatureMonitor",
    "optimizer_settings",
    "resolve_layer",
]
