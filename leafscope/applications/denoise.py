"""Denoising by projection onto the data leaf, against standard denoisers, in one run.

Methods (images ``(N, C, H, W)`` in [0, 1]; noisy images are ``clip(x + σ·ε, 0, 1)``):

- ``noisy``: the input itself (reference).
- ``nearest``: the nearest clean training image (pixel distance): the start of the leaf path.
- ``leaf-full``: the end of a horizontal path from that training image toward the noisy input
  (:func:`project_onto_leaf`): its closest point on the data leaf within ``leaf_steps`` steps.
- ``leaf``: the same path stopped after a tuned number of steps (the path's one parameter,
  chosen like the baselines' on separate noisy training images; 0 steps = ``nearest``).
- ``blur``, ``pca``, ``tv``, ``nl-means``, ``wavelet``, ``bm3d``: the denoisers of
  :mod:`leafscope.applications.denoise_baselines` (``bm3d`` needs the optional ``bm3d``
  package and runs only when asked for: about 1 s per 28×28 image on one idle core).

Protocol: every tuned method's parameters are chosen per σ on separate noisy *training* images
(the last ``tune_points`` of ``train_images``, their own noise draw) as the grid point of best
mean PSNR (:data:`GRIDS`; first best on ties), then applied once to the noisy test images;
``nearest`` and ``leaf-full`` have nothing tuned. Metrics per image, against the clean image:
PSNR and SSIM with data range 1 (over all channels), and the classifier's accuracy on the
output (not an independent judge of the leaf outputs, which are moved by that classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from leafscope.applications.denoise_baselines import (
    blur,
    bm3d_denoise,
    bm3d_unavailable,
    nl_means,
    pca_denoiser,
    tv,
    wavelet,
)
from leafscope.applications.leaf import NearestImages, project_onto_leaf
from leafscope.applications.metrics import psnr
from leafscope.applications.predict import predict_logits
from leafscope.errors import InputError

__all__ = [
    "DEFAULT_METHODS",
    "DenoisePlan",
    "DenoiseResult",
    "DenoiseRow",
    "GRIDS",
    "METHODS",
    "TUNED",
    "Tuned",
    "add_noise",
    "aggregate_row",
    "blur",
    "denoise_benchmark",
    "denoise_images",
    "denoiser",
    "image_metrics",
    "noise_seed",
    "pca_denoiser",
    "plan_denoising",
    "split_train",
    "ssim",
    "tune",
    "tv",
]

TUNED = ("blur", "pca", "tv", "nl-means", "wavelet", "bm3d")
METHODS = ("noisy", "nearest", "leaf-full", "leaf", *TUNED)
DEFAULT_METHODS = tuple(m for m in METHODS if m != "bm3d")
LEAF_STEP_GRID = (0, 5, 10, 20, 50)
GRIDS: dict[str, tuple[dict[str, Any], ...]] = {
    "blur": tuple({"width": w} for w in (0.5, 0.75, 1.0, 1.5, 2.0)),
    "pca": tuple({"n_components": n} for n in (5, 10, 20, 40, 80)),
    "tv": tuple({"weight": w} for w in (0.03, 0.06, 0.1, 0.2, 0.4)),
    "nl-means": tuple(
        {"h": h, "patch_size": p, "patch_distance": d}
        for h in (0.3, 0.5, 0.8, 1.2)
        for p, d in ((3, 4), (5, 6))
    ),
    "wavelet": tuple(
        {"sigma_factor": k, "method": m, "wavelet": w, "levels": lv}
        for m in ("BayesShrink", "VisuShrink")
        for w in ("db1", "sym4")
        for lv in (1, 2)
        for k in (0.25, 0.5, 1.0, 2.0)
    ),
    "bm3d": tuple({"sigma_factor": k} for k in (0.75, 1.0, 1.5)),
}
"""Per tuned method, the candidate keyword arguments of its denoiser (σ̂-relative for the
blind ones: ``h``, ``sigma_factor`` multiply the image's estimated noise std)."""


@dataclass
class DenoiseRow:
    """One method at one σ: mean PSNR (dB), SSIM and their std over images, accuracy in [0, 1];
    ``parameter`` is the first tuned value, ``params`` all of them."""

    method: str
    sigma: float
    psnr: float
    psnr_std: float
    accuracy: float
    parameter: float | None = None
    points: int = 0
    ssim: float = float("nan")
    ssim_std: float = float("nan")
    params: dict[str, Any] | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _params_text(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


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
        """One line per (σ, method): PSNR ± std, SSIM ± std, accuracy, tuned parameters."""
        lines = [
            "| σ | method | PSNR (dB) | SSIM | accuracy | parameters |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.sigma:g} | {r.method} | {r.psnr:.2f} ± {r.psnr_std:.2f} | "
                f"{r.ssim:.3f} ± {r.ssim_std:.3f} | {100 * r.accuracy:.1f}% | "
                f"{_params_text(r.params)} |"
            )
        return "\n".join(lines)

    def wide_markdown(self) -> str:
        """One line per method, PSNR / SSIM / accuracy for each σ side by side."""
        sigmas = sorted({r.sigma for r in self.rows})
        methods = list(dict.fromkeys(r.method for r in self.rows))
        cell = {(r.method, r.sigma): r for r in self.rows}
        head = "| method | " + " | ".join(f"σ={s:g} PSNR | SSIM | acc" for s in sigmas) + " |"
        lines = [head, "|---|" + "---|---|---|" * len(sigmas)]
        for m in methods:
            parts = []
            for s in sigmas:
                r = cell.get((m, s))
                parts.append(
                    "— | — | —"
                    if r is None
                    else f"{r.psnr:.2f} | {r.ssim:.3f} | {100 * r.accuracy:.1f}%"
                )
            lines.append(f"| {m} | " + " | ".join(parts) + " |")
        return "\n".join(lines)


def add_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``clip(x + σ·ε, 0, 1)`` with ε standard normal from a seeded generator."""
    if not sigma >= 0:
        raise InputError(f"sigma must be >= 0 (got {sigma})")
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(x.shape, generator=gen, dtype=torch.float32)
    return (x.float().cpu() + sigma * eps).clamp(0.0, 1.0)


def ssim(reference: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity per image (:func:`skimage.metrics.structural_similarity`, 7×7
    uniform window, ``data_range`` given explicitly; C > 1 channels: mean over channels).

    Args:
        reference: clean images ``(N, H, W)`` or ``(N, C, H, W)``.
        estimate: images of the same shape.
        data_range: peak value (1 for images in [0, 1]).

    Returns:
        ``(N,)`` float64 SSIM in [-1, 1] (1 where the images are equal).
    """
    ref, est = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if ref.shape != est.shape or ref.ndim not in (3, 4):
        raise InputError(
            f"ssim needs two batches (N, H, W) or (N, C, H, W) of equal shape "
            f"(got {ref.shape} and {est.shape})"
        )
    if min(ref.shape[-2:]) < 7:
        raise InputError(f"ssim needs images of at least 7x7 pixels (got {ref.shape[-2:]})")
    if not data_range > 0:
        raise InputError(f"data_range must be > 0 (got {data_range})")
    if ref.ndim == 4 and ref.shape[1] == 1:
        ref, est = ref[:, 0], est[:, 0]
    axis = 0 if ref.ndim == 4 else None
    values = [
        structural_similarity(r, e, data_range=data_range, channel_axis=axis)
        for r, e in zip(ref, est, strict=True)
    ]
    return np.array(values, dtype=np.float64)


def denoiser(
    name: str, params: dict[str, Any], clean_train: Tensor | None = None, seed: int = 0
) -> Callable[[Tensor], Tensor]:
    """The denoiser ``name`` (one of :data:`TUNED`) with keyword arguments ``params``;
    ``pca`` fits its components on ``clean_train``."""
    functions = {"blur": blur, "tv": tv, "nl-means": nl_means, "wavelet": wavelet}
    functions["bm3d"] = bm3d_denoise
    if name == "pca":
        if clean_train is None:
            raise InputError("the pca denoiser needs clean_train images to fit its components")
        return pca_denoiser(clean_train, int(params["n_components"]), seed)
    if name not in functions:
        raise InputError(f"unknown denoiser {name!r}: choose from {', '.join(TUNED)}")
    fn = functions[name]
    return lambda x: fn(x, **params)


@dataclass
class Tuned:
    """Result of :func:`tune`: the chosen parameters, the mean PSNR of every grid point, the
    denoiser with the chosen parameters."""

    params: dict[str, Any]
    scores: list[float]
    apply: Callable[[Tensor], Tensor] = field(repr=False)


def tune(
    name: str,
    clean: Tensor,
    noisy: Tensor,
    *,
    grid: tuple[dict[str, Any], ...] | None = None,
    clean_train: Tensor | None = None,
    seed: int = 0,
) -> Tuned:
    """Pick the grid point of ``name`` with the best mean PSNR of ``noisy`` → ``clean``.

    Args:
        name: one of :data:`TUNED`.
        clean, noisy: ``(N, C, H, W)`` tuning images (not the images reported on).
        grid: candidate parameters (default :data:`GRIDS` ``[name]``).
        clean_train: PCA's training images.

    Returns:
        A :class:`Tuned`; ties go to the first grid point.
    """
    grid = GRIDS[name] if grid is None else grid
    if not grid:
        raise InputError(f"empty parameter grid for {name!r}: give at least one candidate")
    scores, fns = [], []
    for params in grid:
        fn = denoiser(name, params, clean_train, seed)
        scores.append(float(np.mean(psnr(clean.numpy(), fn(noisy).numpy()))))
        fns.append(fn)
    best = int(np.argmax(scores))
    return Tuned(dict(grid[best]), scores, fns[best])


def _anchors(nearest: NearestImages, pool: Tensor, x: Tensor, k: int) -> tuple[Tensor, np.ndarray]:
    """The k nearest pool images of each x, stacked ``(N·k, ...)``, and their indices (N, k)."""
    _, idx = nearest.search(x, k)
    return pool[torch.as_tensor(idx.reshape(-1))], idx


def _resolve_methods(methods: tuple[str, ...] | None, shape: tuple[int, ...]):
    """The methods to run (in :data:`METHODS` order) and ``{method: reason}`` for skipped ones."""
    wanted = DEFAULT_METHODS if methods is None else tuple(methods)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown or not wanted:
        raise InputError(f"unknown methods {unknown or wanted}: choose from {', '.join(METHODS)}")
    skipped = {}
    if "bm3d" in wanted and (reason := bm3d_unavailable(shape)) is not None:
        skipped["bm3d"] = reason
    return [m for m in METHODS if m in wanted and m not in skipped], skipped


@dataclass
class DenoisePlan:
    """What tuning chose, per σ: every method's parameters and the leaf path's step count.

    Tuning reads only the training images; applying the plan to test images is per image
    (:func:`denoise_images`), so the test images can be split into shards.

    Attributes:
        sigmas: noise levels.
        methods: the methods run, in :data:`METHODS` order.
        skipped: ``{method: reason}`` of methods asked for but not run.
        params: ``{f"{σ:g}": {method: parameters or None}}`` (``leaf``: ``{"steps": k}``).
        tune_scores: ``{f"{σ:g}/{method}": mean PSNR per grid point}``.
        leaf_steps, leaf_step, n_anchors, seed, tune_points, pool_points, bm3d_tune_points:
            the settings of :func:`denoise_benchmark`.
    """

    sigmas: tuple[float, ...]
    methods: list[str]
    skipped: dict[str, str]
    params: dict[str, dict[str, dict[str, Any] | None]]
    tune_scores: dict[str, list[float]]
    leaf_steps: int
    leaf_step: float
    n_anchors: int
    seed: int
    tune_points: int
    pool_points: int
    bm3d_tune_points: int | None

    def settings(self, test_points: int) -> dict[str, Any]:
        """The ``settings`` of a :class:`DenoiseResult` on ``test_points`` images."""
        return {
            "sigmas": list(self.sigmas),
            "methods": list(self.methods),
            "skipped": dict(self.skipped),
            "test_points": test_points,
            "pool_points": self.pool_points,
            "tune_points": self.tune_points,
            "bm3d_tune_points": self.bm3d_tune_points,
            "leaf_steps": self.leaf_steps,
            "leaf_step_grid": list(LEAF_STEP_GRID),
            "leaf_step": self.leaf_step,
            "n_anchors": self.n_anchors,
            "seed": self.seed,
            "noise": "clip(x + sigma * N(0, 1), 0, 1)",
            "metrics": "PSNR and SSIM (7x7 window) per image, data_range=1, over all channels",
            "tuning": "per sigma, best mean PSNR on the tuning images over the grid",
            "grids": {k: [dict(p) for p in v] for k, v in GRIDS.items() if k in self.methods},
            "tune_scores": dict(self.tune_scores),
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> DenoisePlan:
        """The plan of :meth:`to_json` (each method's parameters back in the order of its grid,
        whatever order the JSON kept: ``DenoiseRow.parameter`` is the first of them)."""
        params = {
            sigma: {m: _grid_order(m, chosen) for m, chosen in methods.items()}
            for sigma, methods in record["params"].items()
        }
        return cls(**{**record, "sigmas": tuple(record["sigmas"]), "params": params})


def _grid_order(method: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params or method not in GRIDS or not GRIDS[method]:
        return params
    order = list(GRIDS[method][0])
    return {
        **{k: params[k] for k in order if k in params},
        **{k: v for k, v in params.items() if k not in order},
    }


def noise_seed(seed: int, j: int, tuning: bool = False) -> int:
    """The noise seed of σ number ``j``: ``seed + 1000 j`` (+1 for the tuning images)."""
    return seed + 1000 * j + int(tuning)


def split_train(train_images: Tensor, tune_points: int) -> tuple[Tensor, Tensor]:
    """The nearest-image pool (all but the last ``tune_points``) and the tuning images."""
    return train_images[:-tune_points].float(), train_images[-tune_points:].float()


def plan_denoising(
    model: nn.Module,
    train_images: Tensor,
    *,
    sigmas: tuple[float, ...] = (0.1, 0.25, 0.5),
    tune_points: int = 100,
    leaf_steps: int = 50,
    leaf_step: float = 0.1,
    n_anchors: int = 1,
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
    bm3d_tune_points: int | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> DenoisePlan:
    """Tune every method per σ on the last ``tune_points`` training images (see
    :func:`denoise_benchmark` for the arguments; ``image_shape``: ``(N, C, H, W)`` of the test
    batch, which decides whether ``bm3d`` can run; default: the training images')."""
    if len(train_images) <= tune_points or tune_points < 1:
        raise InputError(
            f"need 1 <= tune_points < training images (got tune_points={tune_points}, "
            f"{len(train_images)} training images)"
        )
    shape = tuple(train_images.shape) if image_shape is None else tuple(image_shape)
    run, skipped = _resolve_methods(methods, shape)
    pool, tune_clean = split_train(train_images, tune_points)
    nearest = NearestImages(pool)
    n_bm3d = tune_points if bm3d_tune_points is None else max(1, min(bm3d_tune_points, tune_points))
    params: dict[str, dict[str, dict[str, Any] | None]] = {}
    scores: dict[str, list[float]] = {}
    for j, sigma in enumerate(sigmas):
        tune_noisy = add_noise(tune_clean, sigma, noise_seed(seed, j, tuning=True))
        chosen: dict[str, dict[str, Any] | None] = {m: None for m in run if m not in TUNED}
        if "leaf" in run:
            best = _tune_leaf_steps(model, nearest, pool, tune_clean, tune_noisy, leaf_steps,
                                    leaf_step)  # fmt: skip
            chosen["leaf"] = {"steps": best}
        for name in (m for m in run if m in TUNED):
            n = n_bm3d if name == "bm3d" else tune_points
            t = tune(name, tune_clean[:n], tune_noisy[:n], clean_train=pool, seed=seed)
            chosen[name] = t.params
            scores[f"{sigma:g}/{name}"] = t.scores
        params[f"{sigma:g}"] = chosen
    return DenoisePlan(
        sigmas=tuple(float(s) for s in sigmas),
        methods=run,
        skipped=skipped,
        params=params,
        tune_scores=scores,
        leaf_steps=leaf_steps,
        leaf_step=leaf_step,
        n_anchors=n_anchors,
        seed=seed,
        tune_points=tune_points,
        pool_points=len(pool),
        bm3d_tune_points=n_bm3d if "bm3d" in run else None,
    )


def _every(steps: int) -> int:
    return max(1, min(5, steps))


def _tune_leaf_steps(model, nearest, pool, tune_clean, tune_noisy, steps, step) -> int:
    """The step count of the ``leaf`` method: best mean PSNR on the tuning images."""
    steps_grid = sorted({min(g, steps) for g in LEAF_STEP_GRID} | {steps})
    t_anchor, _ = _anchors(nearest, pool, tune_noisy, 1)
    t_proj = project_onto_leaf(
        model, t_anchor, tune_noisy, max_steps=steps, step=step, record_every=_every(steps)
    )
    scores = [psnr(tune_clean.numpy(), t_proj.at_step(g).numpy()).mean() for g in steps_grid]
    return steps_grid[int(np.argmax(scores))]


def denoise_images(
    model: nn.Module,
    plan: DenoisePlan,
    sigma_index: int,
    noisy: Tensor,
    pool: Tensor,
    nearest: NearestImages | None = None,
) -> tuple[dict[str, tuple[Tensor, dict | None]], list[list[float]]]:
    """Every method of ``plan`` at σ number ``sigma_index`` applied to ``noisy`` images.

    Args:
        model: the classifier (defines the leaf).
        plan: from :func:`plan_denoising`.
        sigma_index: which σ of ``plan.sigmas`` the images carry.
        noisy: ``(n, C, H, W)`` noisy images (each is denoised on its own).
        pool: the clean nearest-image pool (:func:`split_train`).
        nearest: a search index over ``pool`` (built when None).

    Returns:
        ``{method: (images (n, C, H, W), parameters)}`` in ``plan.methods`` order and, with
        leaf methods, the distance to the target along each kept path (else ``[]``).
    """
    chosen = plan.params[f"{plan.sigmas[sigma_index]:g}"]
    outputs: dict[str, tuple[Tensor, dict | None]] = {"noisy": (noisy, None)}
    distance: list[list[float]] = []
    if {"nearest", "leaf-full", "leaf"} & set(plan.methods):
        nearest = NearestImages(pool) if nearest is None else nearest
        best_steps = (chosen.get("leaf") or {}).get("steps", plan.leaf_steps)
        found, distance = _leaf_outputs(
            model, nearest, pool, noisy, best_steps,
            steps=plan.leaf_steps, step=plan.leaf_step, k=min(plan.n_anchors, len(pool)),
        )  # fmt: skip
        outputs.update(found)
    for name in (m for m in plan.methods if m in TUNED):
        params = chosen[name]
        outputs[name] = (denoiser(name, params, pool, plan.seed)(noisy), params)
    return {m: outputs[m] for m in plan.methods}, distance


def _leaf_outputs(model, nearest, pool, noisy, best_steps, *, steps, step, k):
    """Outputs of ``nearest``, ``leaf-full`` and ``leaf`` (``best_steps``) on ``noisy``, and
    the distance along each kept path."""
    anchors, idx = _anchors(nearest, pool, noisy, k)
    proj = project_onto_leaf(
        model,
        anchors,
        noisy.repeat_interleave(k, dim=0),
        max_steps=steps,
        step=step,
        record_every=_every(steps),
    )
    best = proj.final_distance.reshape(len(noisy), k).argmin(axis=1)
    pick = torch.as_tensor(np.arange(len(noisy)) * k + best)
    outputs = {
        "nearest": (pool[torch.as_tensor(idx[:, 0])], None),
        "leaf-full": (proj.points[pick], None),
        "leaf": (proj.at_step(best_steps)[pick], {"steps": best_steps}),
    }
    return outputs, [proj.distance[int(i)] for i in pick]


def image_metrics(
    model: nn.Module, images: Tensor, clean: Tensor, labels: Tensor
) -> dict[str, np.ndarray]:
    """Per image: ``psnr`` (dB), ``ssim`` against ``clean`` (data range 1) and ``correct``
    (the classifier's prediction on ``images`` equals ``labels``), each ``(n,)``."""
    predicted = predict_logits(model, images).argmax(dim=1)
    return {
        "psnr": psnr(clean.numpy(), images.numpy()),
        "ssim": ssim(clean.numpy(), images.numpy()),
        "correct": (predicted == labels.cpu()).numpy(),
    }


def aggregate_row(
    name: str, sigma: float, metrics: dict[str, np.ndarray], params: dict | None
) -> DenoiseRow:
    """The :class:`DenoiseRow` of one method at one σ from its per-image ``metrics``."""
    p, s = np.asarray(metrics["psnr"]), np.asarray(metrics["ssim"])
    correct = torch.from_numpy(np.asarray(metrics["correct"], dtype=bool))
    return DenoiseRow(
        method=name,
        sigma=float(sigma),
        psnr=float(np.mean(p)),
        psnr_std=float(np.std(p)),
        accuracy=float(correct.float().mean()),
        parameter=None if not params else float(next(iter(params.values()))),
        points=len(p),
        ssim=float(np.mean(s)),
        ssim_std=float(np.std(s)),
        params=params,
    )


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
    methods: tuple[str, ...] | None = None,
    bm3d_tune_points: int | None = None,
    progress: bool = False,
) -> DenoiseResult:
    """Run every method at every σ on the same noisy images.

    Args:
        model: the classifier (defines the leaf and scores the accuracy).
        train_images: ``(M, C, H, W)`` clean images: the last ``tune_points`` tune the
            methods, the rest are the nearest-image pool and the PCA training set.
        test_images, test_labels: ``(N, C, H, W)`` clean test images and labels.
        sigmas: noise standard deviations (pixel units).
        leaf_steps, leaf_step: path cap and largest step.
        n_anchors: leaf paths per image (from its nearest training images; the best is kept).
        seed: noise seed (σ index added, so σ levels get independent noise).
        methods: subset of :data:`METHODS` (default :data:`DEFAULT_METHODS`, i.e. without
            ``bm3d``); ``bm3d`` is skipped, with the reason in ``settings["skipped"]``, when
            the package is missing or the images are too small.
        bm3d_tune_points: tune BM3D on only the first this many tuning images (it is slow).

    Returns:
        A :class:`DenoiseResult` with one row per (σ, method).
    """
    if len(train_images) <= tune_points or len(test_images) == 0 or tune_points < 1:
        raise InputError(
            f"need 1 <= tune_points < training images (got tune_points={tune_points}, "
            f"{len(train_images)} training images) and a test image (got {len(test_images)})"
        )
    plan = plan_denoising(
        model, train_images, sigmas=sigmas, tune_points=tune_points, leaf_steps=leaf_steps,
        leaf_step=leaf_step, n_anchors=n_anchors, seed=seed, methods=methods,
        bm3d_tune_points=bm3d_tune_points, image_shape=tuple(test_images.shape),
    )  # fmt: skip
    pool, _ = split_train(train_images, tune_points)
    nearest = NearestImages(pool)
    clean = test_images.float().cpu()
    rows, examples, leaf_distance = [], {}, {}
    for j, sigma in enumerate(plan.sigmas):
        noisy = add_noise(clean, sigma, noise_seed(seed, j))
        outputs, distance = denoise_images(model, plan, j, noisy, pool, nearest)
        if distance:
            leaf_distance[f"{sigma:g}"] = distance
        examples[f"{sigma:g}"] = {"clean": clean[:n_examples]}
        for name, (images, params) in outputs.items():
            metrics = image_metrics(model, images, clean, test_labels)
            rows.append(aggregate_row(name, sigma, metrics, params))
            examples[f"{sigma:g}"][name] = images[:n_examples]
        if progress:
            print(f"sigma {sigma:g}: done", flush=True)
    return DenoiseResult(rows, plan.settings(len(clean)), examples, leaf_distance)
