"""Toy models and data with known answers, shared by the tests and by users' own checks."""

from leafscope.testing.toys import (
    LinearSoftmax,
    closed_form_dim,
    shared_data_dir,
    tiny_cnn,
    tiny_mlp,
)

__all__ = ["LinearSoftmax", "closed_form_dim", "shared_data_dir", "tiny_cnn", "tiny_mlp"]
