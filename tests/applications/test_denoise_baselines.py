"""The benchmark's denoisers equal scikit-image / bm3d called directly; PSNR/SSIM; tuning; RGB."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import (
    denoise_nl_means,
    denoise_tv_chambolle,
    denoise_wavelet,
    estimate_sigma,
)

from leafscope.applications.denoise import (
    GRIDS,
    add_noise,
    denoise_benchmark,
    denoiser,
    ssim,
    tune,
)
from leafscope.applications.denoise_baselines import (
    blur,
    bm3d_denoise,
    bm3d_unavailable,
    nl_means,
    noise_level,
    tv,
    wavelet,
)
from leafscope.applications.metrics import psnr
from leafscope.errors import InputError


def squares(n: int, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, C, size, size) images: a bright square at a random place, each channel its own level."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.ones(n, channels, size, size)
    for i in range(n):
        r, c = torch.randint(0, size // 2, (2,), generator=gen).tolist()
        levels = 0.5 + 0.4 * torch.rand(channels, 1, 1, generator=gen)
        x[i, :, r : r + size // 2, c : c + size // 2] = levels
    return x


def hwc(x: torch.Tensor, i: int) -> np.ndarray:
    """Image i as scikit-image wants it: (H, W) for one channel, (H, W, C) otherwise."""
    a = x[i].double().numpy()
    return a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)


def back(img: np.ndarray) -> np.ndarray:
    return np.clip(img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0), 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_nl_means_and_wavelet_equal_skimage(channels):
    noisy = add_noise(squares(3, channels), 0.2, seed=1)
    axis = None if channels == 1 else -1
    out_nl = nl_means(noisy, h=0.8, patch_size=3, patch_distance=4)
    out_wv = wavelet(noisy, 0.5, method="VisuShrink", wavelet="sym4", levels=1)
    assert out_nl.shape == out_wv.shape == noisy.shape and out_nl.dtype == torch.float32
    for i in range(3):
        img = hwc(noisy, i)
        s = estimate_sigma(img, channel_axis=axis, average_sigmas=channels > 1)
        assert noise_level(img) == pytest.approx(float(s))
        ref = denoise_nl_means(
            img, h=0.8 * s, sigma=s, patch_size=3, patch_distance=4, fast_mode=True,
            channel_axis=axis,
        )  # fmt: skip
        np.testing.assert_allclose(out_nl[i].numpy(), back(ref), atol=1e-6)
        ref = denoise_wavelet(
            img, sigma=0.5 * s, wavelet="sym4", mode="soft", wavelet_levels=1,
            method="VisuShrink", rescale_sigma=True, channel_axis=axis,
        )  # fmt: skip
        np.testing.assert_allclose(out_wv[i].numpy(), back(ref), atol=1e-6)


def test_blur_and_tv_per_channel_rgb():
    noisy = add_noise(squares(2, 3), 0.2, seed=2)
    out_b, out_t = blur(noisy, 1.0), tv(noisy, 0.1)
    for i in range(2):
        img = hwc(noisy, i)
        ref_b = np.stack([gaussian_filter(img[..., c], 1.0, mode="nearest") for c in range(3)])
        np.testing.assert_allclose(out_b[i].numpy(), np.clip(ref_b, 0, 1), atol=1e-6)
        ref_t = denoise_tv_chambolle(img, weight=0.1, channel_axis=-1)
        np.testing.assert_allclose(out_t[i].numpy(), back(ref_t), atol=1e-6)
    assert torch.equal(blur(noisy, 0.0), noisy)  # width 0 is the identity


def test_bm3d_equals_the_package():
    bm3d = pytest.importorskip("bm3d")
    noisy = add_noise(squares(1, 1, size=12), 0.2, seed=3)
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    img = hwc(noisy, 0)
    ref = bm3d.bm3d(img, 1.5 * noise_level(img), profile=profile)
    np.testing.assert_allclose(
        bm3d_denoise(noisy, 1.5)[0, 0].numpy(), np.clip(ref, 0, 1), atol=1e-6
    )
    assert "below" in bm3d_unavailable((1, 1, 8, 8))  # the package crashes on 8x8 images
    with pytest.raises(InputError, match="BM3D cannot run"):
        bm3d_denoise(torch.zeros(1, 1, 8, 8), 1.0)


def test_psnr_and_ssim_on_known_pairs():
    ref = np.zeros((2, 3, 10, 10))
    est = ref.copy()
    est[0] += 0.1  # MSE 0.01 -> 20 dB
    est[1, 0] += 0.1  # one channel of three: MSE 0.01 / 3
    p = psnr(ref, est)
    np.testing.assert_allclose(p, [20.0, 10 * np.log10(300)], rtol=1e-12)
    assert p[1] == pytest.approx(peak_signal_noise_ratio(ref[1], est[1], data_range=1))
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 3, 12, 12)), rng.random((3, 3, 12, 12))
    s = ssim(a, b)
    for i in range(3):
        assert s[i] == pytest.approx(
            structural_similarity(a[i], b[i], data_range=1, channel_axis=0)
        )
    grey = ssim(a[:, :1], b[:, :1])
    assert grey[0] == pytest.approx(structural_similarity(a[0, 0], b[0, 0], data_range=1))
    np.testing.assert_allclose(ssim(a, a), 1.0)
    with pytest.raises(InputError, match="7x7"):
        ssim(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))


def test_tuning_picks_the_best_grid_point():
    clean = squares(4, 1)
    # sigma = 0: the input is clean, so the least smoothing wins; blur width 0 is exact
    t = tune("blur", clean, add_noise(clean, 0.0), grid=({"width": 1.0}, {"width": 0.0}))
    assert t.params == {"width": 0.0} and t.scores[1] == np.inf
    grid = tuple({"h": h, "patch_size": 3, "patch_distance": 4} for h in (0.3, 1.0, 3.0))
    t = tune("nl-means", clean, add_noise(clean, 0.0), grid=grid)
    assert t.params["h"] == 0.3 and t.scores == sorted(t.scores, reverse=True)
    # with noise: the choice is the argmax of the PSNR each candidate gets on the tuning images
    noisy = add_noise(clean, 0.3, seed=5)
    t = tune("wavelet", clean, noisy)
    direct = [
        psnr(clean.numpy(), denoiser("wavelet", g)(noisy).numpy()).mean() for g in GRIDS["wavelet"]
    ]
    np.testing.assert_allclose(t.scores, direct)
    assert t.params == GRIDS["wavelet"][int(np.argmax(direct))]
    assert torch.equal(t.apply(noisy), denoiser("wavelet", t.params)(noisy))
    with pytest.raises(InputError, match="unknown denoiser"):
        denoiser("median", {})


def _rgb_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 14 * 14, 2),
    ).eval()


def test_benchmark_on_rgb_images():
    x = squares(34, 3, seed=6)
    y = torch.arange(len(x)) % 2
    res = denoise_benchmark(
        _rgb_model(), x[:30], x[30:], y[30:], sigmas=(0.2,), tune_points=6, leaf_steps=2,
        methods=("noisy", "leaf", "tv", "nl-means", "wavelet"),
    )  # fmt: skip
    assert [r.method for r in res.rows] == ["noisy", "leaf", "tv", "nl-means", "wavelet"]
    noisy = add_noise(x[30:], 0.2, seed=0)  # the benchmark's noise at sigma index 0
    for r in res.rows:
        out = res.examples["0.2"][r.method]
        assert out.shape == (4, 3, 16, 16)
        assert r.psnr == pytest.approx(psnr(x[30:].numpy(), out.numpy()).mean(), rel=1e-6)
        assert r.ssim == pytest.approx(ssim(x[30:].numpy(), out.numpy()).mean(), rel=1e-6)
    row = {r.method: r for r in res.rows}
    assert torch.equal(res.examples["0.2"]["noisy"], noisy)
    assert torch.equal(res.examples["0.2"]["nl-means"], nl_means(noisy, **row["nl-means"].params))
    assert row["wavelet"].psnr > row["noisy"].psnr and row["nl-means"].ssim > row["noisy"].ssim


def test_bm3d_is_skipped_cleanly_on_small_images(toy):
    model, x, _, xt, yt = toy  # 8x8 images
    res = denoise_benchmark(
        model, x[:40], xt[:4], yt[:4], sigmas=(0.25,), tune_points=10, methods=("noisy", "bm3d")
    )
    assert [r.method for r in res.rows] == ["noisy"] and "bm3d" in res.settings["skipped"]
    with pytest.raises(InputError, match="unknown methods"):
        denoise_benchmark(model, x[:40], xt[:4], yt[:4], tune_points=10, methods=("median",))
