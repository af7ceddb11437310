"""The OOD protocol driver: the validation blur, the out sets, the training settings."""

import pytest
import torch

from leafscope.errors import InputError
from leafscope.experiments.ood_protocol import TRAINING, blurred, out_sets, train_models


def test_blur_keeps_constants_inside_and_mass_of_a_centred_dot():
    x = torch.full((1, 1, 20, 20), 0.5)
    b = blurred(x, sigma=1.0)
    assert b.shape == x.shape
    torch.testing.assert_close(b[..., 4:-4, 4:-4], x[..., 4:-4, 4:-4])  # far from the zero pad
    dot = torch.zeros(1, 1, 21, 21)
    dot[0, 0, 10, 10] = 1.0
    bd = blurred(dot, sigma=1.5)
    assert bd.sum().item() == pytest.approx(1.0, abs=1e-5)  # kernel sums to 1, no mass lost
    assert bd[0, 0, 10, 10] == bd.max() and bd[0, 0, 10, 11] == pytest.approx(bd[0, 0, 11, 10])
    with pytest.raises(InputError, match="sigma must be > 0"):
        blurred(x, 0)


def test_out_sets_skip_missing_files_with_a_note():
    sets, notes = out_sets("mnist", ["noise", "digits", "kmnist"], 7)
    assert sets["noise"].shape == (7, 1, 28, 28) and sets["digits"].shape == (7, 1, 28, 28)
    if "kmnist" not in sets:
        assert any(n.startswith("kmnist: skipped") for n in notes)


def test_training_settings_are_known():
    assert set(TRAINING) == {"converged", "partial"}
    assert TRAINING["converged"]["momentum"] > 0 and TRAINING["converged"]["lr_step"]
    with pytest.raises(InputError, match="unknown training settings"):
        train_models(["forever"], [0], "unused")
