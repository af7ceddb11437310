"""Closest point on the data leaf: horizontal paths from anchors toward targets, and anchors.

Wraps :func:`leafscope.foliation.paths.horizontal_paths` with the ``adaptive`` method (the step
is halved until the distance to the target decreases), so the distance to the target never
increases and every point stays in the pixel box. The end point is the closest point to the
target that the path reaches on the leaf through the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.foliation.paths import PathConfig, horizontal_paths

__all__ = ["LeafProjection", "NearestImages", "project_onto_leaf"]


@dataclass
class LeafProjection:
    """Result of :func:`project_onto_leaf` for B targets.

    Attributes:
        points: ``(B, *shape)`` float32, the end point of each path (in the box).
        distance: per target, ``‖x_t − target‖`` at every step (non-increasing).
        steps: ``(B,)`` steps taken.
        frames: with ``record_every``: per target the points at steps 0, k, 2k, ... and the end.
        frame_steps: the step index of each frame.
    """

    points: Tensor
    distance: list[list[float]]
    steps: np.ndarray
    frames: list[Tensor] | None = None
    frame_steps: list[list[int]] | None = None

    def at_step(self, step: int) -> Tensor:
        """``(B, *shape)`` each path's last recorded point at or before ``step`` (needs frames)."""
        if self.frames is None or self.frame_steps is None:
            raise InputError("no frames recorded: call project_onto_leaf with record_every")
        out = []
        for frames, steps in zip(self.frames, self.frame_steps, strict=True):
            k = int(np.searchsorted(np.asarray(steps), step, side="right")) - 1
            out.append(frames[max(k, 0)])
        return torch.stack(out)

    @property
    def start_distance(self) -> np.ndarray:
        return np.array([d[0] for d in self.distance])

    @property
    def final_distance(self) -> np.ndarray:
        return np.array([d[-1] for d in self.distance])


def project_onto_leaf(
    model: nn.Module,
    anchors: Tensor,
    targets: Tensor,
    *,
    max_steps: int = 50,
    step: float = 0.1,
    min_step: float = 1e-3,
    box: tuple[float, float] | None = (0.0, 1.0),
    dtype: torch.dtype = torch.float32,
    batch_size: int = 256,
    record_every: int | None = None,
) -> LeafProjection:
    """Move each anchor along its leaf toward its target; return the end points.

    Args:
        model: classifier (evaluated in eval mode).
        anchors: ``(B, *shape)`` start points, e.g. clean training images.
        targets: ``(B, *shape)`` points to approach, e.g. noisy images (inside ``box``).
        max_steps: most steps per path (each costs one G evaluation per active path).
        step: largest step length (input units).
        min_step: a path stops when the step needed to decrease the distance is below this.
        box: pixel box every point is clamped to.
        dtype: ``torch.float32`` (default) or ``torch.float64``.
        batch_size: paths run together.
        record_every: also keep every k-th point of each path (``frames``).

    Returns:
        A :class:`LeafProjection`; a target equal to its anchor gives a 0-step path.
    """
    if anchors.shape != targets.shape or anchors.dim() < 2:
        raise InputError(
            f"anchors and targets must both be (B, *shape) (got {tuple(anchors.shape)} and "
            f"{tuple(targets.shape)})"
        )
    config = PathConfig(
        method="adaptive",
        step=step,
        threshold=0.0,
        max_steps=max_steps,
        box=box,
        dtype=dtype,
        record_every=record_every or max(max_steps, 1),
        min_step=min_step,
    )
    points = anchors.detach().float().cpu().clone()
    gap = (targets.detach().cpu().float() - points).flatten(1).norm(dim=1)
    distance: list[list[float]] = [[float(g)] for g in gap]
    steps = np.zeros(len(points), dtype=np.int64)
    frames = [points[i : i + 1].clone() for i in range(len(points))]
    frame_steps = [[0] for _ in range(len(points))]
    todo = torch.nonzero(gap > 0).flatten()
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        res = horizontal_paths(model, anchors[idx], targets[idx], config)
        for j, i in enumerate(idx.tolist()):
            points[i] = res.points[j][-1].reshape(points.shape[1:])
            distance[i] = res.distance[j]
            steps[i] = len(res.distance[j]) - 1
            frames[i], frame_steps[i] = res.points[j], res.point_steps[j]
    if record_every is None:
        return LeafProjection(points=points, distance=distance, steps=steps)
    return LeafProjection(points, distance, steps, frames, frame_steps)


class NearestImages:
    """Exact Euclidean nearest neighbours among reference images (faiss, flat L2 index).

    Args:
        reference: ``(M, *shape)`` images.
    """

    def __init__(self, reference: Tensor):
        if reference.dim() < 2 or reference.shape[0] == 0:
            raise InputError(f"need reference images (M, ...) with M >= 1 (got {reference.shape})")
        self.reference = reference.detach().float().cpu()
        flat = np.ascontiguousarray(self.reference.flatten(1).numpy(), dtype=np.float32)
        self.index = faiss.IndexFlatL2(flat.shape[1])
        self.index.add(flat)

    def search(self, x: Tensor, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(distances (N, k) Euclidean, indices (N, k))`` of the k nearest reference images."""
        if not 1 <= k <= len(self.reference):
            raise InputError(f"k must be in [1, {len(self.reference)}] (got {k})")
        q = np.ascontiguousarray(x.detach().float().cpu().flatten(1).numpy(), dtype=np.float32)
        d2, idx = self.index.search(q, k)
        return np.sqrt(np.maximum(d2, 0.0)), idx
