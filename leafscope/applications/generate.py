"""New images of a class by random walks on the data leaf (the talk's GAN remark).

From a training image of the class, each step moves ``step`` along a random direction projected
onto D_x = Im G(x) (the leaf's tangent space) and clamps to the pixel box. The direction is
drawn once per walk and kept (a persistent walk drifts; a fresh direction every step would only
diffuse); with ``keep_class`` a step that changes the predicted class is undone and a new
direction is drawn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from leafscope.applications.predict import predict_logits
from leafscope.errors import InputError
from leafscope.information import DataInformation
from leafscope.models.inspect import model_device

__all__ = [
    "LeafWalk",
    "choose_starts",
    "generate_class",
    "leaf_random_walk",
    "starts_from_predictions",
    "walk_seed",
]


@dataclass
class LeafWalk:
    """Walk results for B start points.

    Attributes:
        start: ``(B, *shape)`` start images.
        images: ``(B, *shape)`` end images (float32, in the box).
        predicted: ``(B,)`` predicted class of the end images.
        probability: ``(B,)`` probability of that class.
        accepted: ``(B,)`` steps taken (rejected steps excluded).
        displacement: ``(B,)`` ‖end − start‖ (pixel units).
        start_index: ``(B,)`` index of the start image in the caller's set (−1 if unknown).
    """

    start: Tensor
    images: Tensor
    predicted: Tensor
    probability: Tensor
    accepted: Tensor
    displacement: Tensor
    start_index: Tensor

    def to_json(self) -> dict:
        return {
            "predicted": self.predicted.tolist(),
            "probability": self.probability.tolist(),
            "accepted_steps": self.accepted.tolist(),
            "displacement": self.displacement.tolist(),
            "start_index": self.start_index.tolist(),
        }


def leaf_random_walk(
    model: nn.Module,
    start: Tensor,
    *,
    steps: int = 200,
    step: float = 0.1,
    keep_class: bool = True,
    seed: int = 0,
    box: tuple[float, float] | None = (0.0, 1.0),
    dtype: torch.dtype = torch.float32,
    seeds: list[int] | None = None,
) -> LeafWalk:
    """Random walks on the leaves through ``start`` ``(B, *shape)``.

    Args:
        model: classifier (copied to ``dtype``, eval mode).
        start: start images.
        steps: step attempts per walk.
        step: step length (input units).
        keep_class: undo steps that change the predicted class (and redraw the direction).
        seed: seed of the directions.
        box: pixel box.
        seeds: one seed per walk: each walk draws its directions from its own generator, so
            its result does not depend on the other walks of the batch (sharded jobs); None:
            one generator seeded ``seed`` for the batch.

    Returns:
        A :class:`LeafWalk`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be an integer >= 0 (got {steps!r})")
    if not step > 0:
        raise InputError(f"step must be > 0 (got {step})")
    if seeds is not None and len(seeds) != len(start):
        raise InputError(f"seeds must give one seed per walk ({len(start)}, got {len(seeds)})")
    work = copy.deepcopy(model).to(dtype).eval()
    device = model_device(work)
    draw = _direction_draw(seed, seeds, dtype)
    shape = tuple(start.shape[1:])
    x0 = start.detach().to(device=device, dtype=dtype).flatten(1)
    with torch.no_grad():
        target = work(x0.reshape(-1, *shape)).argmax(dim=1)
    x, prev = x0.clone(), x0.clone()
    direction = draw(torch.arange(len(x)), x.shape[1]).to(device)
    accepted = torch.zeros(len(x), dtype=torch.long)
    for t in range(steps + 1):
        info = DataInformation(work, x.reshape(-1, *shape))
        bad = info.predicted.to(device) != target if keep_class else torch.zeros_like(target).bool()
        if bad.any():
            x[bad] = prev[bad]
            direction[bad] = draw(bad.nonzero().flatten().cpu(), x.shape[1]).to(device)
            accepted[bad.cpu()] -= 1
        if t == steps:
            break
        good = ~bad
        v = info.project_leaf(direction)
        u = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
        prev = x.clone()
        moved = x + step * u
        if box is not None:
            moved = moved.clamp(box[0], box[1])
        x = torch.where(good[:, None], moved, x)
        accepted[good.cpu()] += 1
    images = x.reshape(-1, *shape).float().cpu()
    probs = torch.softmax(predict_logits(work, images).double(), dim=1)
    prob, pred = probs.max(dim=1)
    return LeafWalk(
        start=start.detach().float().cpu(),
        images=images,
        predicted=pred,
        probability=prob.float(),
        accepted=accepted.clamp_min(0),
        displacement=(images - start.float().cpu()).flatten(1).norm(dim=1),
        start_index=torch.full((len(x),), -1, dtype=torch.long),
    )


def walk_seed(seed: int, position: int) -> int:
    """The seed of walk ``position`` of a job seeded ``seed`` (NumPy's SeedSequence: distinct
    positions give independent streams)."""
    state = np.random.SeedSequence([int(seed), int(position)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _direction_draw(seed: int, seeds: list[int] | None, dtype: torch.dtype):
    """``draw(walks, d) -> (len(walks), d)`` standard normal directions: from one generator in
    walk order, or (``seeds``) each walk's row from that walk's own generator."""
    if seeds is None:
        gen = torch.Generator().manual_seed(int(seed))
        return lambda walks, d: torch.randn((len(walks), d), generator=gen, dtype=dtype)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def draw(walks: Tensor, d: int) -> Tensor:
        rows = [torch.randn(d, generator=gens[int(i)], dtype=dtype) for i in walks]
        return torch.stack(rows) if rows else torch.empty((0, d), dtype=dtype)

    return draw


def choose_starts(
    model: nn.Module, images: Tensor, labels: Tensor, label: int, *, n: int, seed: int = 0
) -> np.ndarray:
    """``n`` indices of images of class ``label`` that the model classifies correctly, drawn
    with ``seed`` (with replacement only when fewer than ``n`` exist).

    Raises:
        InputError: no image of the class is classified correctly.
    """
    predicted = predict_logits(model, images).argmax(dim=1)
    return starts_from_predictions(predicted, labels, label, n=n, seed=seed)


def starts_from_predictions(
    predicted: Tensor, labels: Tensor, label: int, *, n: int, seed: int = 0
) -> np.ndarray:
    """:func:`choose_starts` from the model's predicted classes ``(N,)`` of the images (so the
    images can be classified a batch at a time).

    Raises:
        InputError: no image of the class is classified correctly.
    """
    predicted, labels = torch.as_tensor(predicted).cpu(), torch.as_tensor(labels).cpu()
    pool = torch.nonzero((labels == label) & (predicted == label)).flatten().numpy()
    if len(pool) == 0:
        raise InputError(
            f"no training image of class {label} is classified correctly: check the class "
            f"(labels present: {sorted(set(labels.tolist()))[:20]}) or train the model longer"
        )
    rng = np.random.default_rng(seed)
    pick = rng.choice(pool, size=n, replace=len(pool) < n)
    return pick


def generate_class(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    label: int,
    *,
    n: int = 16,
    steps: int = 200,
    step: float = 0.1,
    seed: int = 0,
    box: tuple[float, float] | None = (0.0, 1.0),
) -> LeafWalk:
    """``n`` new images of class ``label`` from random training images of that class that the
    model classifies correctly (chosen with ``seed``), by :func:`leaf_random_walk` (``box``: the
    pixel box, None for vectors)."""
    pick = choose_starts(model, images, labels, label, n=n, seed=seed)
    start = images[torch.as_tensor(pick)]
    walk = leaf_random_walk(model, start, steps=steps, step=step, seed=seed, box=box)
    walk.start_index = torch.as_tensor(pick, dtype=torch.long)
    return walk
