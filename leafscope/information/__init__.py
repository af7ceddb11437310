"""The math core: data information matrix G and Fisher matrix F (torch only, no I/O)."""

from leafscope.information.jacobian import (
    ATTENTION_ROUTES,
    attention_route,
    cast_model,
    check_inputs,
    eval_mode,
    input_jacobian,
    logits_of,
    parameter_jacobian,
    probability_logits,
    reference_model,
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
from leafscope.information.trace import TraceEstimate, trace_estimate

__all__ = [
    "ATTENTION_ROUTES",
    "DataInformation",
    "FisherInformation",
    "InformationMatrix",
    "MeanInformation",
    "RankInfo",
    "SpectrumSummary",
    "TopKSpectrum",
    "TraceEstimate",
    "attention_route",
    "cast_model",
    "check_inputs",
    "eval_mode",
    "input_jacobian",
    "logits_of",
    "parameter_jacobian",
    "probability_logits",
    "point_spectra",
    "reference_model",
    "summarize_spectra",
    "top_eigenvalues",
    "trace_estimate",
]
