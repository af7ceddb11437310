"""leafscope: the geometry a trained classifier imposes on its data."""

from leafscope.errors import (
    CheckpointError,
    DataFileError,
    InputError,
    LeafscopeError,
    NotFittedError,
)
from leafscope.information import (
    DataInformation,
    FisherInformation,
    InformationMatrix,
    point_spectra,
    summarize_spectra,
    top_eigenvalues,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataFileError",
    "DataInformation",
    "FisherInformation",
    "InformationMatrix",
    "InputError",
    "LeafscopeError",
    "NotFittedError",
    "load_checkpoint",
    "point_spectra",
    "summarize_spectra",
    "top_eigenvalues",
]


def __getattr__(name: str):
    # Lazy re-exports of the outer layers, so importing the core stays light.
    if name == "load_checkpoint":
        from leafscope.training.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'leafscope' has no attribute {name!r}")
