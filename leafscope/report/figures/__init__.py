"""Figures, one module per area; every function returns a matplotlib Figure and saves nothing
(:func:`leafscope.report.save.save_figure` writes one as PNG).

:mod:`~leafscope.report.figures.core` (training, spectra of G, G across training),
:mod:`~leafscope.report.figures.foliation`, :mod:`~leafscope.report.figures.applications`,
:mod:`~leafscope.report.figures.thermo`, :mod:`~leafscope.report.figures.nnk`.
"""
