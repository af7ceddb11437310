"""``generate``: new points of a class by random walks on the data leaf.

The units are the walks: ``points`` start images of class ``label`` that the model classifies
correctly, drawn with ``seed`` from the first ``pool`` points of the data set (chosen once, in
the client, so they are part of the job's fingerprint). Each walk moves along a random direction
projected on D_x, clamps pixels to [0, 1] and undoes steps that change the predicted class;
walk number i draws its directions from its own seed (:func:`walk_seed` of ``(seed, i)``), so
its end point does not depend on the shards or the executor. One row per walk: the start and
end points (flattened), their predicted classes and probabilities, the accepted steps and the
displacement. With a result folder, ``_files/grid.png`` (starts, then walks),
``_files/generated.npz`` (the arrays) and ``_files/generate.json`` (the summary and the per-walk
lists) are written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, param, register_task

__all__ = ["GenerateParams", "GenerateTask"]

#: Points classified together while the start images are chosen.
CLASSIFY_BATCH = 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateParams(Params):
    """Parameters of :class:`GenerateTask`.

    Attributes:
        label: the class to generate (an index ``0..C-1``); required.
        points: how many walks, i.e. points generated (each from its own start image).
        steps: step attempts per walk.
        step: step length in input units (pixels in [0, 1]).
        pool: the start images are drawn from the first this many points of the data set.
        seed: seed of the start images and of the walks' directions.
    """

    label: int | None = param(None, help="the class to generate (required)", flag="--class",
                              metavar="CLASS")  # fmt: skip
    points: int = param(16, help="how many walks: points generated, one per start image")
    steps: int = param(200, help="step attempts per walk")
    step: float = param(0.1, help="step length (input units)")
    pool: int = param(5000, help="the start images are drawn from the first this many points")
    seed: int = param(0, help="seed of the start images and of the walks' directions")

    def validate(self) -> None:
        if self.label is not None and self.label < 0:
            raise InputError(f"label must be a class index >= 0 (got {self.label})")
        for name in ("points", "pool"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.steps < 0:
            raise InputError(f"steps must be >= 0 (got {self.steps})")
        if not self.step > 0:
            raise InputError(f"step must be > 0 (got {self.step})")


@register_task
class GenerateTask(Task):
    """Random walks on the data leaf from correctly classified points of one class."""

    name = "generate"
    Params = GenerateParams
    per_point = False
    default_split = "train"
    summary = "generate points of a class by random walks on the data leaf"
    description = (
        "Starts from correctly classified points of class --class (drawn with --seed from the "
        "first --pool points of the data set, the training split by default) and walks on the "
        "data leaf: a random direction projected on D_x each step, pixels clamped to [0, 1], "
        "steps that change the predicted class undone. Rows: one per walk. With --out DIR: "
        "DIR/_files/grid.png (top: starts, bottom: generated, with predicted class and "
        "probability), DIR/_files/generated.npz and DIR/_files/generate.json."
    )
    columns = (
        "unit",
        "walk",
        "start_index",
        "start_predicted",
        "start_probability",
        "predicted",
        "probability",
        "accepted_steps",
        "displacement",
        "start",
        "image",
    )

    def units(self, context: Context) -> list[Any]:
        from leafscope.applications.generate import starts_from_predictions
        from leafscope.applications.predict import predict_logits

        p: GenerateParams = self.params
        model, data = context.model(), context.data()
        if p.label is None:
            raise InputError("generate needs the class to generate: pass `label=C`, a class index")
        n_classes = max(int(data.num_classes), 0)
        if n_classes and not 0 <= p.label < n_classes:
            raise InputError(
                f"`label={p.label}` is not a class of {data.name}: use 0..{n_classes - 1}"
            )
        n = min(p.pool, len(data))
        predicted, labels = [], []
        for start in range(0, n, CLASSIFY_BATCH):
            x, y = data.take(range(start, min(n, start + CLASSIFY_BATCH)))
            predicted.append(predict_logits(model, x.to(context.device)).argmax(dim=1))
            labels.append(y)
        starts = starts_from_predictions(
            torch.cat(predicted), torch.cat(labels), p.label, n=p.points, seed=p.seed
        )
        return [{"walk": i, "start": int(s)} for i, s in enumerate(starts)]

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        return {
            "shape": list(data.input_shape),
            "box": [0.0, 1.0] if data.is_image else None,  # pixels stay pixels
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.applications.generate import leaf_random_walk, walk_seed
        from leafscope.applications.predict import predict_logits

        p: GenerateParams = self.params
        model = context.model()
        walks = [int(context.units[i]["walk"]) for i in positions]
        starts = [int(context.units[i]["start"]) for i in positions]
        images, _ = context.data().take(starts)
        box = context.meta["box"]
        walk = leaf_random_walk(
            model,
            images.to(context.device),
            steps=p.steps,
            step=p.step,
            seed=p.seed,
            box=None if box is None else (float(box[0]), float(box[1])),
            seeds=[walk_seed(p.seed, w) for w in walks],
        )
        probs = torch.softmax(predict_logits(model, walk.start).double(), dim=1)
        start_probability, start_predicted = probs.max(dim=1)
        return {
            "unit": np.asarray(positions, dtype=np.int64),
            "walk": np.asarray(walks, dtype=np.int64),
            "start_index": np.asarray(starts, dtype=np.int64),
            "start_predicted": start_predicted.numpy().astype(np.int64),
            "start_probability": start_probability.numpy(),
            "predicted": walk.predicted.numpy().astype(np.int64),
            "probability": walk.probability.double().numpy(),
            "accepted_steps": walk.accepted.numpy().astype(np.int64),
            "displacement": walk.displacement.double().numpy(),
            "start": walk.start.flatten(1).double().numpy(),
            "image": walk.images.flatten(1).double().numpy(),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        p: GenerateParams = self.params
        predicted = np.asarray(rows["predicted"])
        return {
            "class": p.label,
            "walks": int(len(predicted)),
            "steps": p.steps,
            "step": p.step,
            "seed": p.seed,
            "kept_class": float(np.mean(predicted == p.label)),
            "mean_displacement": float(np.mean(rows["displacement"])),
            "mean_accepted_steps": float(np.mean(rows["accepted_steps"])),
            "kind": "images" if context.meta.get("box") is not None else "vectors",
        }

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        keys = ("start_index", "predicted", "probability", "accepted_steps", "displacement")
        return {"walks": {k: np.asarray(rows[k]).tolist() for k in keys}}

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        return [
            f"{summary['walks']} {summary['kind']} of class {summary['class']}: kept class "
            f"{100 * summary['kept_class']:.0f}%, mean displacement "
            f"{summary['mean_displacement']:.2f}, {summary['mean_accepted_steps']:.1f} of "
            f"{summary['steps']} steps accepted on average"
        ]

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        from leafscope.io import write_json, write_npz
        from leafscope.tasks._tiles import tile_png

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shape = tuple(int(s) for s in context.meta["shape"])
        n = len(rows["unit"])
        start = np.asarray(rows["start"], dtype=np.float32).reshape(n, *shape)
        end = np.asarray(rows["image"], dtype=np.float32).reshape(n, *shape)
        arrays = {
            "images": end,
            "starts": start,
            "start_index": np.asarray(rows["start_index"], dtype=np.int64),
            "predicted": np.asarray(rows["predicted"], dtype=np.int64),
            "probability": np.asarray(rows["probability"], dtype=np.float32),
        }
        npz = write_npz(folder / "generated.npz", **arrays)
        per_row = 8
        grid_rows, captions = [], []
        for name, points, pred, prob in (
            ("start", start, rows["start_predicted"], rows["start_probability"]),
            ("walk", end, rows["predicted"], rows["probability"]),
        ):
            for s in range(0, n, per_row):
                grid_rows.append((name if s == 0 else "", points[s : s + per_row]))
                captions.append(
                    [f"{int(c)} ({float(q):.2f})" for c, q in zip(pred[s : s + per_row],
                                                               prob[s : s + per_row],
                                                               strict=True)]
                )  # fmt: skip
        title = (
            f"class {summary['class']}: starts, then leaf walks of {summary['steps']} steps "
            "(predicted class and probability)"
        )
        grid = tile_png(folder / "grid.png", grid_rows, captions=captions, title=title)
        record = {**summary, **self.payload(rows, summary, context)}
        return [grid, npz, write_json(folder / "generate.json", record)]
