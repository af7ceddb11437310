"""Rotations in plain torch: exact on quarter turns, composable, clear errors."""

import pytest
import torch

from leafscope.data.transforms import random_rotation, rotate
from leafscope.errors import InputError


@pytest.fixture
def images():
    return torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(0))


def test_zero_angle_is_identity(images):
    assert rotate(images, 0.0).equal(images)


@pytest.mark.parametrize("quarter", [1, 2, 3, -1])
def test_quarter_turns_match_rot90(images, quarter):
    torch.testing.assert_close(
        rotate(images, 90.0 * quarter), torch.rot90(images, quarter, (2, 3)), atol=1e-5, rtol=0
    )


def test_per_image_angles(images):
    angles = torch.tensor([0.0, 90.0, 180.0, 270.0])
    out = rotate(images, angles)
    for i in range(4):
        torch.testing.assert_close(out[i], torch.rot90(images[i], i, (1, 2)), atol=1e-5, rtol=0)


def test_rotation_preserves_a_centred_disk():
    # a radially symmetric image is unchanged by any rotation (up to interpolation error)
    r = torch.linspace(-1, 1, 29)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disk = torch.exp(-8 * (xx**2 + yy**2))[None, None]
    assert (rotate(disk, 37.0) - disk).abs().max() < 0.02


def test_random_rotation_is_seeded_and_bounded(images):
    a = random_rotation(images, 30, torch.Generator().manual_seed(1))
    b = random_rotation(images, 30, torch.Generator().manual_seed(1))
    assert a.equal(b) and not a.equal(images)
    assert random_rotation(images, 0).equal(images)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: rotate(x[0], 10.0), "N, C, H, W"),
        (lambda x: rotate(x.long(), 10.0), "float"),
        (lambda x: rotate(x, torch.tensor([1.0, 2.0])), "shape"),
        (lambda x: rotate(x, float("nan")), "NaN"),
        (lambda x: random_rotation(x, 200), "max_degrees"),
    ],
)
def test_bad_input(images, call, match):
    with pytest.raises(InputError, match=match):
        call(images)
