"""Denoising by projection onto the data leaf, against standard denoisers, in one run.

Methods (images in [0, 1]; noisy images are ``clip(x + σ·ε, 0, 1)``):

- ``noisy``: the input itself (reference).
- ``nearest``: the nearest clean training image (pixel distance): the start of the leaf path.
- ``leaf-full``: the end of a horizontal path from that training image toward the noisy input
  (:func:`project_onto_leaf`): its closest point on the data leaf within ``leaf_steps`` steps.
- ``leaf``: the same path stopped after a tuned number of steps (the path's one parameter,
  chosen like the baselines' on separate noisy training images; 0 steps = ``nearest``).
- ``blur``: Gaussian blur (:func:`scipy.ndimage.gaussian_filter`).
- ``pca``: projection on the top principal components of clean training images (sklearn).
- ``tv``: total variation (:func:`skimage.restoration.denoise_tv_chambolle`).

Each method's single parameter is tuned per σ on separate noisy training images (best mean
PSNR over a small grid); ``nearest`` and ``leaf-full`` have nothing tuned. Metrics: mean PSNR
(data range 1) against the clean image and the classifier's accuracy on the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_tv_chambolle
from sklearn.decomposition import PCA
from torch import Tensor, nn

from leafscope.applications.leaf import NearestImages, project_onto_leaf
from leafscope.applications.metrics import psnr
from leafscope.errors import InputError
from leafscope.models.features import penultimate_features

__all__ = [
    "DenoiseResult",
    "DenoiseRow",
    "GRIDS",
    "METHODS",
    "add_noise",
    "blur",
    "denoise_benchmark",
    "pca_denoiser",
    "tv",
]

METHODS = ("noisy", "nearest", "leaf-full", "leaf", "blur", "pca", "tv")
LEAF_STEP_GRID = (0, 5, 10, 20, 50)
GRIDS = {
    "blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "pca": (5, 10, 20, 40, 80),
    "tv": (0.03, 0.06, 0.1, 0.2, 0.4),
}


@dataclass
class DenoiseRow:
    """One method at one σ: mean PSNR (dB) and its std over images, accuracy in [0, 1]."""

    method: str
    sigma: float
    psnr: float
    psnr_std: float
    accuracy: float
    parameter: float | None = None
    points: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class DenoiseResult:
    """Rows and a few example images per σ and method (for strips)."""

    rows: list[DenoiseRow]
    settings: dict = field(default_factory=dict)
    examples: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)
    leaf_distance: dict[str, list[list[float]]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"results": [r.to_json() for r in self.rows], "settings": self.settings}

    def markdown(self) -> str:
        lines = ["| σ | method | PSNR (dB) | accuracy | parameter |", "|---|---|---|---|---|"]
        for r in self.rows:
            par = "" if r.parameter is None else f"{r.parameter:g}"
            lines.append(
                f"| {r.sigma:g} | {r.method} | {r.psnr:.2f} ± {r.psnr_std:.2f} | "
                f"{100 * r.accuracy:.1f}% | {par} |"
            )
        return "\n".join(lines)


def add_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``clip(x + σ·ε, 0, 1)`` with ε standard normal from a seeded generator."""
    if not sigma >= 0:
        raise InputError(f"sigma must be >= 0 (got {sigma})")
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(x.shape, generator=gen, dtype=torch.float32)
    return (x.float().cpu() + sigma * eps).clamp(0.0, 1.0)


def blur(x: Tensor, width: float) -> Tensor:
    """Gaussian blur of each image (N, C, H, W) with standard deviation ``width`` pixels (each
    channel on its own)."""
    a = x.float().cpu().numpy()
    out = np.stack([gaussian_filter(img, (0, width, width), mode="nearest") for img in a])
    return torch.from_numpy(out.astype(np.float32)).clamp(0.0, 1.0)


def tv(x: Tensor, weight: float) -> Tensor:
    """Chambolle total-variation denoising of each image (N, C, H, W) (colour TV when C > 1)."""
    a = x.float().cpu().numpy().astype(np.float64)
    out = np.stack([
        denoise_tv_chambolle(img[0], weight=weight)[None] if len(img) == 1
        else denoise_tv_chambolle(img, weight=weight, channel_axis=0)
        for img in a
    ])  # fmt: skip
    return torch.from_numpy(out.astype(np.float32)).clamp(0.0, 1.0)


def pca_denoiser(clean: Tensor, n_components: int, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """A function projecting images onto the top ``n_components`` PCs of ``clean`` images."""
    flat = clean.float().cpu().flatten(1).numpy()
    n = min(n_components, flat.shape[0], flat.shape[1])
    pca = PCA(n_components=n, random_state=seed).fit(flat)

    def apply(x: Tensor) -> Tensor:
        z = pca.inverse_transform(pca.transform(x.float().cpu().flatten(1).numpy()))
        return torch.from_numpy(z.astype(np.float32)).reshape(x.shape).clamp(0.0, 1.0)

    return apply


def _anchors(nearest: NearestImages, pool: Tensor, x: Tensor, k: int) -> tuple[Tensor, np.ndarray]:
    """The k nearest pool images of each x, stacked ``(N·k, ...)``, and their indices (N, k)."""
    _, idx = nearest.search(x, k)
    return pool[torch.as_tensor(idx.reshape(-1))], idx


def _accuracy(model: nn.Module, x: Tensor, labels: Tensor) -> float:
    return float((penultimate_features(model, x).logits.argmax(dim=1) == labels).float().mean())


def _tuned(name: str, clean_train: Tensor, tune_clean: Tensor, tune_noisy: Tensor, seed: int):
    best = None
    for value in GRIDS[name]:
        fn = _baseline(name, value, clean_train, seed)
        score = float(np.mean(psnr(tune_clean.numpy(), fn(tune_noisy).numpy())))
        if best is None or score > best[0]:
            best = (score, value, fn)
    return best[1], best[2]


def _baseline(name: str, value: float, clean_train: Tensor, seed: int) -> Callable:
    if name == "blur":
        return lambda x: blur(x, value)
    if name == "tv":
        return lambda x: tv(x, value)
    return pca_denoiser(clean_train, int(value), seed)


def denoise_benchmark(
    model: nn.Module,
    train_images: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    sigmas: tuple[float, ...] = (0.1, 0.25, 0.5),
    tune_points: int = 100,
    leaf_steps: int = 50,
    leaf_step: float = 0.1,
    n_anchors: int = 1,
    seed: int = 0,
    n_examples: int = 8,
    progress: bool = False,
) -> DenoiseResult:
    """Run every method at every σ on the same noisy images.

    Args:
        model: the classifier (defines the leaf and scores the accuracy).
        train_images: ``(M, 1, H, W)`` clean images: the last ``tune_points`` tune the
            baselines, the rest are the nearest-image pool and the PCA training set.
        test_images, test_labels: ``(N, 1, H, W)`` clean test images and labels.
        sigmas: noise standard deviations (pixel units).
        leaf_steps, leaf_step: path cap and largest step.
        n_anchors: leaf paths per image (from its nearest training images; the best is kept).
        seed: noise seed (σ index added, so σ levels get independent noise).

    Returns:
        A :class:`DenoiseResult` with one row per (σ, method).
    """
    if len(train_images) <= tune_points or len(test_images) == 0:
        raise InputError(
            f"need more than tune_points={tune_points} training images (got {len(train_images)}) "
            f"and at least one test image (got {len(test_images)})"
        )
    pool, tune_clean = train_images[:-tune_points].float(), train_images[-tune_points:].float()
    nearest = NearestImages(pool)
    clean = test_images.float().cpu()
    rows, examples, leaf_distance = [], {}, {}
    for j, sigma in enumerate(sigmas):
        noisy = add_noise(clean, sigma, seed + 1000 * j)
        tune_noisy = add_noise(tune_clean, sigma, seed + 1000 * j + 1)
        steps_grid = sorted({min(g, leaf_steps) for g in LEAF_STEP_GRID} | {leaf_steps})
        every = max(1, min(5, leaf_steps))
        t_anchor, _ = _anchors(nearest, pool, tune_noisy, 1)
        t_proj = project_onto_leaf(
            model, t_anchor, tune_noisy, max_steps=leaf_steps, step=leaf_step, record_every=every
        )
        scores = [psnr(tune_clean.numpy(), t_proj.at_step(g).numpy()).mean() for g in steps_grid]
        best_steps = steps_grid[int(np.argmax(scores))]
        k = min(n_anchors, len(pool))
        anchors, idx = _anchors(nearest, pool, noisy, k)
        proj = project_onto_leaf(
            model,
            anchors,
            noisy.repeat_interleave(k, dim=0),
            max_steps=leaf_steps,
            step=leaf_step,
            record_every=every,
        )
        best = proj.final_distance.reshape(len(clean), k).argmin(axis=1)
        pick = torch.as_tensor(np.arange(len(clean)) * k + best)
        outputs = {"noisy": (noisy, None), "nearest": (pool[torch.as_tensor(idx[:, 0])], None)}
        outputs["leaf-full"] = (proj.points[pick], None)
        outputs["leaf"] = (proj.at_step(best_steps)[pick], float(best_steps))
        leaf_distance[f"{sigma:g}"] = [proj.distance[int(i)] for i in pick]
        for name in ("blur", "pca", "tv"):
            value, fn = _tuned(name, pool, tune_clean, tune_noisy, seed)
            outputs[name] = (fn(noisy), value)
        examples[f"{sigma:g}"] = {"clean": clean[:n_examples]}
        for name, (images, value) in outputs.items():
            p = psnr(clean.numpy(), images.numpy())
            rows.append(
                DenoiseRow(
                    method=name,
                    sigma=float(sigma),
                    psnr=float(np.mean(p)),
                    psnr_std=float(np.std(p)),
                    accuracy=_accuracy(model, images, test_labels),
                    parameter=None if value is None else float(value),
                    points=len(clean),
                )
            )
            examples[f"{sigma:g}"][name] = images[:n_examples]
        if progress:
            print(f"sigma {sigma:g}: done", flush=True)
    settings = {
        "sigmas": list(sigmas),
        "test_points": len(clean),
        "pool_points": len(pool),
        "tune_points": tune_points,
        "leaf_steps": leaf_steps,
        "leaf_step_grid": list(LEAF_STEP_GRID),
        "leaf_step": leaf_step,
        "n_anchors": n_anchors,
        "seed": seed,
        "noise": "clip(x + sigma * N(0, 1), 0, 1)",
        "grids": {k: list(v) for k, v in GRIDS.items()},
    }
    return DenoiseResult(rows, settings, examples, leaf_distance)
