"""Vertical walks (across leaves, inside ker G), the noise leaf, and paths to flipped symbols.

A vertical walk fixes one random unit direction ``r`` per point and repeats
``x ← x + h · P_ker(x) r / ‖P_ker(x) r‖`` (theory §2): the model ignores these directions to
first order, so the image fills with noise while the prediction stays. The baseline moves the
same distance along a random straight line (:func:`random_line_accuracy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from leafscope.dtypes import check_dtype
from leafscope.errors import InputError
from leafscope.foliation._common import (
    check_box,
    check_count,
    check_positive,
    check_rtol,
    clamp_box,
    config_json,
    model_in,
    unit,
)
from leafscope.foliation.paths import PathConfig, PathResult, horizontal_paths
from leafscope.information import DataInformation, check_inputs
from leafscope.models.inspect import model_device

__all__ = [
    "NoiseLeafResult",
    "WalkConfig",
    "WalkResult",
    "flip_horizontal",
    "noise_leaf",
    "path_to_flipped",
    "random_line_accuracy",
    "total_variation",
    "vertical_walk",
]


@dataclass
class WalkConfig:
    """Settings of a vertical walk (defaults: the reference experiment).

    Attributes:
        steps: number of steps.
        step: step length h (input units).
        box: clamp to ``[low, high]`` after each step (None, the default: no clamp, so every
            step lies exactly in ker G; with a box the clamp moves off the kernel).
        dtype: ``torch.float32`` (default) or ``torch.float64``.
        rtol: relative rank tolerance defining D_x (None: default).
        record_every: record every k-th step (the last one is always recorded).
        seed: seed of the random directions.
        chunk_size: samples per vectorised Jacobian chunk.
    """

    steps: int = 1000
    step: float = 0.1
    box: tuple[float, float] | None = None
    dtype: torch.dtype = torch.float32
    rtol: float | None = None
    record_every: int = 50
    seed: int = 0
    chunk_size: int | None = None

    def check(self) -> WalkConfig:
        check_count(self.steps, "steps", 0)
        check_positive(self.step, "step")
        check_count(self.record_every, "record_every")
        self.box = check_box(self.box)
        check_dtype(self.dtype, "WalkConfig.dtype")
        check_rtol(self.rtol)
        return self

    def to_json(self) -> dict:
        return config_json(self)


@dataclass
class WalkResult:
    """Recorded states of B vertical walks.

    Attributes:
        config: the settings.
        steps: ``(K,)`` step index of each record (0 = start).
        points: ``(B, K, *shape)`` float32 recorded points.
        distance: ``(B, K)`` ``‖x_k − x_0‖`` (input units).
        predicted: ``(B, K)`` predicted class.
        max_prob: ``(B, K)`` maximum class probability.
        labels: ``(B,)`` true labels (-1 when unknown).
        leaf_component: ``(B, K)`` ``‖P_D(x_k − x_0)‖ / ‖x_k − x_0‖`` (0 for a pure kernel walk
            to first order; grows with curvature).
    """

    config: WalkConfig
    steps: Tensor
    points: Tensor
    distance: Tensor
    predicted: Tensor
    max_prob: Tensor
    labels: Tensor
    leaf_component: Tensor

    def accuracy(self) -> Tensor:
        """``(K,)`` fraction of points whose prediction equals the label."""
        return (self.predicted == self.labels[:, None]).double().mean(dim=0)

    def prediction_kept(self) -> Tensor:
        """``(K,)`` fraction of points still predicted as at the start."""
        return (self.predicted == self.predicted[:, :1]).double().mean(dim=0)

    def curve(self) -> list[dict]:
        """``[{step, distance (mean over points), accuracy, prediction_kept}]`` per record."""
        acc, kept, dist = self.accuracy(), self.prediction_kept(), self.distance.mean(dim=0)
        return [
            {
                "step": int(self.steps[k]),
                "distance": float(dist[k]),
                "accuracy": float(acc[k]),
                "prediction_kept": float(kept[k]),
            }
            for k in range(len(self.steps))
        ]

    def to_json(self) -> dict:
        return {"config": self.config.to_json(), "curve": self.curve()}


def vertical_walk(
    model: nn.Module,
    x: Tensor,
    config: WalkConfig | None = None,
    *,
    labels: Tensor | None = None,
    direction: Tensor | None = None,
) -> WalkResult:
    """Walk from each point along a fixed random direction projected on ker G(x) at every step.

    Args:
        model: classifier (eval mode forced).
        x: start points ``(B, *shape)``.
        config: :class:`WalkConfig` (defaults: 1000 steps of 0.1, no clamp, float32).
        labels: ``(B,)`` true labels for the accuracy curve (default: the start predictions).
        direction: ``(B, *shape)`` or ``(*shape)`` directions (default: Gaussian, seeded).

    Returns:
        :class:`WalkResult`.
    """
    cfg = (config or WalkConfig()).check()
    check_inputs(x, "start points")
    dtype = cfg.dtype
    model = model_in(model, dtype)
    device = model_device(model)
    shape = tuple(x.shape[1:])
    b = x.shape[0]
    cur = clamp_box(x.detach().to(device, dtype).reshape(b, -1), cfg.box)
    x0 = cur.clone()
    if direction is None:
        gen = torch.Generator().manual_seed(cfg.seed)
        direction = torch.randn(cur.shape, generator=gen, dtype=dtype)
    elif direction.numel() not in (cur[0].numel(), cur.numel()):
        raise InputError(
            f"direction must have shape {tuple(x.shape)} or {shape} (got {tuple(direction.shape)})"
        )
    r = direction.to(device, dtype).reshape(-1, cur.shape[1]).expand_as(cur)
    rec: dict[str, list] = {k: [] for k in ("steps", "points", "dist", "pred", "maxp", "leaf")}
    for k in range(cfg.steps + 1):
        info = DataInformation(model, cur.reshape(b, *shape), chunk_size=cfg.chunk_size)
        if k % cfg.record_every == 0 or k == cfg.steps:
            moved = cur - x0
            dist = moved.norm(dim=1)
            leaf = info.project_leaf(moved, cfg.rtol).norm(dim=1) / dist.clamp_min(1e-30)
            rec["steps"].append(k)
            rec["points"].append(cur.float().cpu().reshape(b, *shape))
            rec["dist"].append(dist.cpu())
            rec["pred"].append(info.predicted.cpu())
            rec["maxp"].append(info.probs.max(dim=1).values.cpu())
            rec["leaf"].append(leaf.cpu())
        if k == cfg.steps:
            break
        v, _ = unit(info.project_kernel(r, cfg.rtol))
        cur = clamp_box(cur + cfg.step * v, cfg.box)
    pred = torch.stack(rec["pred"], dim=1)
    lab = pred[:, 0].clone() if labels is None else torch.as_tensor(labels).reshape(-1).cpu()
    if lab.shape != (b,):
        raise InputError(f"labels must have shape ({b},) (got {tuple(lab.shape)})")
    return WalkResult(
        config=cfg,
        steps=torch.tensor(rec["steps"]),
        points=torch.stack(rec["points"], dim=1),
        distance=torch.stack(rec["dist"], dim=1).double(),
        predicted=pred,
        max_prob=torch.stack(rec["maxp"], dim=1).double(),
        labels=lab,
        leaf_component=torch.stack(rec["leaf"], dim=1).double(),
    )


@torch.no_grad()
def random_line_accuracy(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    distance: Tensor,
    *,
    seed: int = 1,
    box: tuple[float, float] | None = None,
    directions: Tensor | None = None,
) -> Tensor:
    """Accuracy after moving each point a given distance along a random straight line.

    Args:
        model: classifier.
        x: ``(B, *shape)`` start points.
        labels: ``(B,)`` true labels.
        distance: ``(B, K)`` distance per point and record (e.g. ``WalkResult.distance``).
        seed: seed of the random unit directions (one per point).
        box: optional clamp.
        directions: ``(B, *shape)`` directions to use instead of the seeded Gaussian ones
            (normalised here), e.g. one row of a larger seeded draw per point.

    Returns:
        ``(K,)`` accuracy at each record.
    """
    check_inputs(x, "start points")
    device = model_device(model)
    dtype = next(model.parameters()).dtype
    b = x.shape[0]
    if distance.dim() != 2 or distance.shape[0] != b:
        raise InputError(f"distance must be (B={b}, K) (got {tuple(distance.shape)})")
    if directions is None:
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(b, x[0].numel(), generator=gen, dtype=torch.float64)
    elif directions.numel() != x.numel():
        raise InputError(
            f"directions must have the shape of x {tuple(x.shape)} (got {tuple(directions.shape)})"
        )
    r, _ = unit(directions.detach().reshape(b, -1).to("cpu", torch.float64))
    flat = x.detach().reshape(b, -1).double()
    was = model.training
    model.eval()
    acc = []
    try:
        for k in range(distance.shape[1]):
            pts = clamp_box(flat + distance[:, k : k + 1].double() * r, box)
            logits = model(pts.to(device, dtype).reshape(x.shape))
            acc.append((logits.argmax(dim=1).cpu() == labels.cpu()).double().mean())
    finally:
        model.train(was)
    return torch.stack(acc)


def total_variation(images: Tensor) -> Tensor:
    """Anisotropic total variation per image ``(N, ..., H, W)`` → ``(N,)`` (a noise measure);
    flat inputs ``(N, n)`` use the 1-D variation ``Σ|x_{i+1} − x_i|``."""
    if images.dim() == 2:
        return (images[:, 1:] - images[:, :-1]).abs().sum(dim=1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(dim=1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(dim=1)
    return dx + dy


def flip_horizontal(images: Tensor) -> Tensor:
    """Mirror images ``(N, C, H, W)`` (or ``(N, H, W)``) left-right (a symbol not in MNIST, e.g. a
    flipped 3).

    Raises:
        InputError: ``images`` are vectors ``(N, D)``: mirroring needs images.
    """
    if images.dim() < 3:
        shape = tuple(images.shape)
        hint = ": vectors (N, D) have no left and right; use image data" if len(shape) == 2 else ""
        raise InputError(f"flip_horizontal mirrors images (N, C, H, W), got shape {shape}{hint}")
    return images.flip(-1)


def path_to_flipped(
    model: nn.Module, start: Tensor, digit: Tensor, config: PathConfig | None = None
) -> PathResult:
    """Horizontal paths from ``start`` ``(B, *shape)`` to the mirrored ``digit`` images
    ``(B, *shape)``."""
    return horizontal_paths(model, start, flip_horizontal(digit), config)


@dataclass
class NoiseLeafResult:
    """The noise leaf experiment: vertical steps, then a horizontal path to a clean image.

    Attributes:
        walk: the vertical walk from the clean start.
        noisy_path: horizontal path from the noisy start to the end.
        clean_path: horizontal path from the clean start to the end (the comparison).
        noise_start: ``(B,)`` ``‖noisy start − clean start‖``.
        noise_end: ``(B,)`` ``‖end of noisy path − end of clean path‖``.
        tv_noisy / tv_clean: ``(B,)`` total variation of the two final images.
    """

    walk: WalkResult
    noisy_path: PathResult
    clean_path: PathResult
    noise_start: Tensor
    noise_end: Tensor
    tv_noisy: Tensor
    tv_clean: Tensor

    @property
    def kept_fraction(self) -> Tensor:
        """``(B,)`` noise_end / noise_start (≈ 1: the horizontal path keeps the noise)."""
        return self.noise_end / self.noise_start

    def to_json(self) -> dict:
        return {
            "noise_start": self.noise_start.tolist(),
            "noise_end": self.noise_end.tolist(),
            "kept_fraction": self.kept_fraction.tolist(),
            "tv_noisy_end": self.tv_noisy.tolist(),
            "tv_clean_end": self.tv_clean.tolist(),
            "noisy_path_final_distance": self.noisy_path.final_distance,
            "clean_path_final_distance": self.clean_path.final_distance,
        }


def noise_leaf(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    *,
    kernel_steps: int = 250,
    walk_config: WalkConfig | None = None,
    path_config: PathConfig | None = None,
) -> NoiseLeafResult:
    """Move ``kernel_steps`` vertically from ``start``, then horizontally to ``end``.

    Args:
        model: classifier.
        start: ``(B, *shape)`` clean start images.
        end: ``(B, *shape)`` clean end images.
        kernel_steps: vertical steps (default 250, as in the talk).
        walk_config: vertical settings (default: step 0.1, clamped to [0, 1] so the noisy image
            is still an image; ``steps`` is replaced by ``kernel_steps``).
        path_config: horizontal settings (default :class:`PathConfig`).

    Returns:
        :class:`NoiseLeafResult`.
    """
    check_count(kernel_steps, "kernel_steps")
    wc = walk_config or WalkConfig(box=(0.0, 1.0))
    wc = WalkConfig(**{**asdict(wc), "steps": kernel_steps, "record_every": kernel_steps})
    walk = vertical_walk(model, start, wc)
    noisy = walk.points[:, -1]
    noisy_path = horizontal_paths(model, noisy, end, path_config)
    clean_path = horizontal_paths(model, start, end, path_config)
    fin_noisy = torch.stack([p[-1] for p in noisy_path.points])
    fin_clean = torch.stack([p[-1] for p in clean_path.points])
    return NoiseLeafResult(
        walk=walk,
        noisy_path=noisy_path,
        clean_path=clean_path,
        noise_start=(noisy - start.float().cpu()).flatten(1).norm(dim=1).double(),
        noise_end=(fin_noisy - fin_clean).flatten(1).norm(dim=1).double(),
        tv_noisy=total_variation(fin_noisy).double(),
        tv_clean=total_variation(fin_clean).double(),
    )
