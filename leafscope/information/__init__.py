"""The math core: data information matrix G and Fisher matrix F (torch only, no I/O)."""

from leafscope.information.jacobian import (
    cast_model,
    check_inputs,
    eval_mode,
    input_jacobian,
    logits_of,
    parameter_jacobian,
)
from leafscope.information.matrices import (
    DataInformation,
    FisherInformation,
    InformationMatrix,
    RankInfo,
)
from leafscope.information.mean import MeanInformation
from leafscope.information.spectrum import SpectrumSummary, point_spectra, summarize_spectra
from leafscope.information.topk import TopKSpectrum, top_eigenvalues

__all__ = [
    "DataInformation",
    "FisherInformation",
    "InformationMatrix",
    "MeanInformation",
    "RankInfo",
    "SpectrumSummary",
    "TopKSpectrum",
    "cast_model",
    "check_inputs",
    "eval_mode",
    "input_jacobian",
    "logits_of",
    "parameter_jacobian",
    "point_spectra",
    "summarize_spectra",
    "top_eigenvalues",
]
