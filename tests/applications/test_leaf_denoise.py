"""Leaf projection: distance to the target never increases, points stay in the box; denoising."""

import numpy as np
import pytest
import torch

from leafscope.applications import NearestImages, add_noise, denoise_benchmark, project_onto_leaf
from leafscope.applications.denoise import GRIDS, blur, pca_denoiser, tv
from leafscope.applications.metrics import psnr
from leafscope.errors import InputError


def test_projection_is_monotone_and_in_box(toy):
    model, x, y, xt, _ = toy
    noisy = add_noise(xt[:12], 0.3, seed=1)
    anchors = x[NearestImages(x).search(noisy, 1)[1][:, 0]]
    proj = project_onto_leaf(model, anchors, noisy, max_steps=15)
    assert proj.points.shape == noisy.shape
    assert float(proj.points.min()) >= 0.0 and float(proj.points.max()) <= 1.0
    for d in proj.distance:
        assert np.all(np.diff(d) <= 1e-6), d  # monotone non-increasing
    assert (proj.final_distance < proj.start_distance - 1e-4).all()  # the path helps
    # the recorded final distance is the distance of the returned point
    true = (proj.points - noisy).flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(true, proj.final_distance, rtol=1e-4, atol=1e-5)


def test_projection_of_target_equal_to_anchor_is_zero_steps(toy):
    model, x, *_ = toy
    proj = project_onto_leaf(model, x[:2], x[:2].clone(), max_steps=5)
    assert proj.steps.tolist() == [0, 0] and proj.final_distance.tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="anchors and targets"):
        project_onto_leaf(model, x[:2], x[:3])


def test_nearest_images_exact(toy):
    _, x, *_ = toy
    d, idx = NearestImages(x).search(x[5:8] + 0.0, 2)
    assert idx[:, 0].tolist() == [5, 6, 7] and np.allclose(d[:, 0], 0, atol=1e-3)
    brute = (x[None, 5] - x).flatten(1).norm(dim=1).sort().values[1]
    assert d[0, 1] == pytest.approx(float(brute), rel=1e-4)


def test_baselines_denoise_and_keep_range():
    gen = torch.Generator().manual_seed(0)
    clean = torch.zeros(6, 1, 28, 28)
    clean[:, :, 8:20, 8:20] = 1.0
    noisy = add_noise(clean, 0.3, seed=2)
    base = psnr(clean.numpy(), noisy.numpy()).mean()
    for out in (
        blur(noisy, 1.0),
        tv(noisy, 0.2),
        pca_denoiser((clean + 0.02 * torch.rand(6, 1, 28, 28, generator=gen)).clamp(0, 1), 3)(
            noisy
        ),
    ):
        assert out.shape == clean.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        assert psnr(clean.numpy(), out.numpy()).mean() > base


def test_denoise_benchmark_rows(toy):
    model, x, y, xt, yt = toy
    res = denoise_benchmark(
        model, x, xt[:10], yt[:10], sigmas=(0.25,), tune_points=20, leaf_steps=5
    )
    methods = [r.method for r in res.rows]
    assert methods == ["noisy", "nearest", "leaf-full", "leaf", "blur", "pca", "tv"] + [
        "nl-means",
        "wavelet",
    ]
    row = {r.method: r for r in res.rows}
    assert row["blur"].parameter is not None and row["leaf-full"].parameter is None
    assert row["leaf"].parameter in (0.0, 5.0)
    assert all(0 <= r.accuracy <= 1 and np.isfinite(r.psnr) for r in res.rows)
    assert set(res.to_json()["results"][0]) >= {"method", "sigma", "psnr", "ssim", "accuracy"}
    assert row["nl-means"].params in [dict(g) for g in GRIDS["nl-means"]]
    assert all(-1 <= r.ssim <= 1 for r in res.rows)
    for d in res.leaf_distance["0.25"]:
        assert np.all(np.diff(d) <= 1e-6)


def test_frames_follow_the_path(toy):
    model, x, _, xt, _ = toy
    noisy = add_noise(xt[:3], 0.3, seed=4)
    proj = project_onto_leaf(model, x[:3], noisy, max_steps=6, record_every=2)
    assert torch.equal(proj.at_step(0), x[:3].float())
    assert torch.equal(proj.at_step(10**6), proj.points)
    for i, (frames, steps) in enumerate(zip(proj.frames, proj.frame_steps, strict=True)):
        assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == proj.steps[i]
        for frame, step in zip(frames, steps, strict=True):
            gap = float((frame - noisy[i]).norm())
            assert gap == pytest.approx(proj.distance[i][step], rel=1e-4, abs=1e-5)
