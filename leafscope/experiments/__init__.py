"""Experiment drivers and reproduction scripts: they call the algorithms (information,
foliation, applications, thermo, nnk, training), the algorithms never call them.

Modules (imported on demand, nothing is loaded here):
:mod:`~leafscope.experiments.foliation` (paths between random pairs next to vertical walks),
:mod:`~leafscope.experiments.reproduce_involutivity` (the involutivity table, a script),
:mod:`~leafscope.experiments.thermo` (the temperature-pruning reproductions),
:mod:`~leafscope.experiments.nnk` (geometry across checkpoints, CW-DeepNNK early stopping),
:mod:`~leafscope.experiments.demo` (the measurements of ``leafscope demo``).
"""
