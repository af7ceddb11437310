"""Standard image denoisers for the denoising benchmark, on batches ``(N, C, H, W)`` in [0, 1].

Every function denoises each image on its own (one channel: the ``(H, W)`` plane; C > 1: the
``(H, W, C)`` image with ``channel_axis=-1``) and returns float32 clipped to [0, 1]:

- :func:`blur`: Gaussian blur (:func:`scipy.ndimage.gaussian_filter`, no blur across channels).
- :func:`tv`: Chambolle total variation (:func:`skimage.restoration.denoise_tv_chambolle`).
- :func:`pca_denoiser`: projection on the top principal components of clean images.
- :func:`nl_means`: non-local means (:func:`skimage.restoration.denoise_nl_means`).
- :func:`wavelet`: wavelet shrinkage (:func:`skimage.restoration.denoise_wavelet`,
  BayesShrink or VisuShrink; needs PyWavelets).
- :func:`bm3d_denoise`: BM3D (the optional ``bm3d`` package: ``pip install leafscope[bm3d]``).

NL-means, wavelet and BM3D are blind: their noise level is :func:`noise_level` (the wavelet
estimate of :func:`skimage.restoration.estimate_sigma` on the noisy image itself), times a
factor that the benchmark tunes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.restoration import (
    denoise_nl_means,
    denoise_tv_chambolle,
    denoise_wavelet,
    estimate_sigma,
)
from sklearn.decomposition import PCA
from torch import Tensor

from leafscope.errors import InputError

__all__ = [
    "BM3D_MIN_SIZE",
    "blur",
    "bm3d_denoise",
    "bm3d_unavailable",
    "nl_means",
    "noise_level",
    "pca_denoiser",
    "per_image",
    "tv",
    "wavelet",
]

BM3D_MIN_SIZE = 9
"""Smallest image side BM3D accepts (the library crashes on images up to its 8-pixel blocks)."""

_NOISE_FLOOR = 1e-6


def per_image(x: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Apply ``fn`` to each image of ``x`` ``(N, C, H, W)`` and stack, clipped to [0, 1].

    Args:
        x: images in [0, 1].
        fn: takes and returns one float64 image, ``(H, W)`` for C = 1, ``(H, W, C)`` otherwise.

    Returns:
        ``(N, C, H, W)`` float32 tensor.
    """
    if x.dim() != 4:
        raise InputError(f"denoisers take images (N, C, H, W) (got shape {tuple(x.shape)})")
    a = x.detach().float().cpu().numpy().astype(np.float64)
    if a.shape[1] == 1:
        out = np.stack([fn(img[0]) for img in a])[:, None]
    else:
        out = np.stack([np.moveaxis(fn(np.moveaxis(img, 0, -1)), -1, 0) for img in a])
    return torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32))


def _channel_axis(image: np.ndarray) -> int | None:
    return -1 if image.ndim == 3 else None


def noise_level(image: np.ndarray) -> float:
    """Estimated noise std of one image ``(H, W)`` or ``(H, W, C)`` (mean over channels),
    :func:`skimage.restoration.estimate_sigma`, floored at 1e-6 so a clean flat image gives a
    positive filter strength."""
    axis = _channel_axis(image)
    s = estimate_sigma(image, channel_axis=axis, average_sigmas=axis is not None)
    return max(float(s), _NOISE_FLOOR)


def blur(x: Tensor, width: float) -> Tensor:
    """Gaussian blur of each image (N, C, H, W), std ``width`` pixels (0: identity)."""
    if not width >= 0:
        raise InputError(f"blur width must be >= 0 pixels (got {width})")
    return per_image(
        x,
        lambda img: gaussian_filter(img, (width, width, 0)[: img.ndim], mode="nearest"),
    )


def tv(x: Tensor, weight: float) -> Tensor:
    """Chambolle total-variation denoising of each image (N, C, H, W) with ``weight``."""
    return per_image(
        x, lambda img: denoise_tv_chambolle(img, weight=weight, channel_axis=_channel_axis(img))
    )


def pca_denoiser(clean: Tensor, n_components: int, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """A function projecting images onto the top ``n_components`` PCs of ``clean`` images
    (all channels flattened together)."""
    flat = clean.float().cpu().flatten(1).numpy()
    n = min(int(n_components), flat.shape[0], flat.shape[1])
    pca = PCA(n_components=n, random_state=seed).fit(flat)

    def apply(x: Tensor) -> Tensor:
        z = pca.inverse_transform(pca.transform(x.float().cpu().flatten(1).numpy()))
        return torch.from_numpy(z.astype(np.float32)).reshape(x.shape).clamp(0.0, 1.0)

    return apply


def nl_means(x: Tensor, h: float, patch_size: int = 5, patch_distance: int = 6) -> Tensor:
    """Non-local means of each image: ``denoise_nl_means(img, h=h·σ̂, sigma=σ̂, patch_size,
    patch_distance, fast_mode=True)`` with σ̂ = :func:`noise_level` of the image.

    Args:
        x: ``(N, C, H, W)`` noisy images in [0, 1].
        h: filter strength in units of σ̂ (> 0).
        patch_size, patch_distance: patch side and search radius (pixels).
    """
    if not h > 0:
        raise InputError(f"nl-means h must be > 0 (in units of the noise estimate; got {h})")

    def one(img: np.ndarray) -> np.ndarray:
        s = noise_level(img)
        return denoise_nl_means(
            img,
            h=h * s,
            sigma=s,
            patch_size=int(patch_size),
            patch_distance=int(patch_distance),
            fast_mode=True,
            channel_axis=_channel_axis(img),
        )

    return per_image(x, one)


def wavelet(
    x: Tensor,
    sigma_factor: float,
    method: str = "BayesShrink",
    wavelet: str = "db1",
    levels: int | None = None,
) -> Tensor:
    """Wavelet shrinkage of each image: ``denoise_wavelet(img, sigma=sigma_factor·σ̂,
    wavelet, mode="soft", wavelet_levels=levels, method, rescale_sigma=True)``.

    Args:
        x: ``(N, C, H, W)`` noisy images in [0, 1].
        sigma_factor: noise std given to the shrinkage, in units of σ̂ = :func:`noise_level`.
        method: ``"BayesShrink"`` or ``"VisuShrink"``.
        wavelet: a PyWavelets name (``"db1"``, ``"sym4"``, ...).
        levels: decomposition levels (None: scikit-image's default).
    """
    if method not in ("BayesShrink", "VisuShrink"):
        raise InputError(f"wavelet method must be BayesShrink or VisuShrink (got {method!r})")
    if importlib.util.find_spec("pywt") is None:
        raise InputError("wavelet denoising needs PyWavelets: pip install PyWavelets")

    def one(img: np.ndarray) -> np.ndarray:
        return denoise_wavelet(
            img,
            sigma=sigma_factor * noise_level(img),
            wavelet=wavelet,
            mode="soft",
            wavelet_levels=levels,
            method=method,
            rescale_sigma=True,
            channel_axis=_channel_axis(img),
        )

    return per_image(x, one)


def bm3d_unavailable(shape: tuple[int, ...] | None = None) -> str | None:
    """Why BM3D cannot run (the package is missing, or images ``(N, C, H, W)`` are smaller than
    :data:`BM3D_MIN_SIZE` or have a channel count other than 1 or 3), or None when it can."""
    if importlib.util.find_spec("bm3d") is None:
        return "the bm3d package is not installed (pip install leafscope[bm3d])"
    if shape is not None:
        if min(shape[-2:]) < BM3D_MIN_SIZE:
            return f"images {shape[-2]}x{shape[-1]} are below BM3D's {BM3D_MIN_SIZE} px minimum"
        if shape[1] not in (1, 3):
            return f"BM3D takes 1 or 3 channels (got {shape[1]})"
    return None


def bm3d_denoise(x: Tensor, sigma_factor: float) -> Tensor:
    """BM3D of each image with noise std ``sigma_factor·σ̂`` (σ̂ = :func:`noise_level`):
    ``bm3d.bm3d`` for one channel, ``bm3d.bm3d_rgb`` (opponent colour space) for three; the
    default profile, single-threaded (reproducible to the bit).

    Raises:
        InputError: :func:`bm3d_unavailable` gives a reason.
    """
    reason = bm3d_unavailable(tuple(x.shape))
    if reason is not None:
        raise InputError(f"BM3D cannot run: {reason}")
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1

    def one(img: np.ndarray) -> np.ndarray:
        s = sigma_factor * noise_level(img)
        if img.ndim == 3:
            return bm3d.bm3d_rgb(img, s, profile=profile)
        return bm3d.bm3d(img, s, profile=profile)

    return per_image(x, one)
