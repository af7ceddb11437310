"""``denoise``: leaf projection against standard denoisers on noisy images of a data set.

Every method's parameters are tuned per σ once, in the client, on the training split
(:meth:`DenoiseTask.prepare`: the first ``pool`` training images; their last ``tune_points``
are the tuning images, the rest the clean nearest-image pool); the plan is part of the job, so
every worker applies the same one. The selected test images then run as units: each gets the
noise of σ number j as row p (its unit position) of one seeded draw over all units, is
denoised by every method, and gives one row per (σ, method) with PSNR, SSIM and whether the
classifier still predicts its label. The summary is the table of
:func:`leafscope.applications.denoise_benchmark` on the same images; with a result folder the
denoising strips of the first images at the largest σ are written too.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, param, register_task, split_roles

__all__ = ["DenoiseParams", "DenoiseTask", "noisy_images", "resolve_methods", "result_of"]

#: Test images denoised together (every method holds a batch of outputs at once).
BLOCK = 64
#: Images in the strips of ``_files/denoise_strips.png``.
STRIP_IMAGES = 8
#: Significant digits of the tuning scores kept in the job (so a rerun on another machine,
#: whose last bits may differ, recognises the same job).
SCORE_DIGITS = 10


def resolve_methods(text: str) -> tuple[str, ...] | None:
    """``default`` -> None (every method but bm3d), ``all`` -> every method, else the comma
    list (checked against :data:`leafscope.applications.denoise.METHODS`)."""
    from leafscope.applications.denoise import METHODS

    if text == "default":
        return None
    if text == "all":
        return METHODS
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise InputError(
            f"methods: unknown {bad or text!r}; use default, all or a comma list of "
            f"{','.join(METHODS)}"
        )
    return names


@dataclasses.dataclass(frozen=True, kw_only=True)
class DenoiseParams(Params):
    """Parameters of :class:`DenoiseTask`.

    Attributes:
        sigma: noise standard deviations in pixel units (images in [0, 1]); the noisy image is
            ``clip(x + sigma * N(0, 1), 0, 1)``.
        pool: clean training images read: the first this many of the training split.
        tune_points: the last this many of them tune every method (the rest are the
            nearest-image pool and PCA's training set).
        leaf_steps: most steps of each leaf path.
        leaf_step: largest step of a leaf path (pixel units).
        anchors: leaf paths per image, from its nearest training images (the best is kept).
        seed: seed of the noise (σ number j uses ``seed + 1000 j``).
        methods: ``default`` (every method but bm3d), ``all``, or a comma list.
        bm3d_tune_points: tune BM3D on only the first this many tuning images (None: all).
    """

    sigma: tuple[float, ...] = param((0.1, 0.25, 0.5), help="noise std, or a comma list")
    pool: int = param(10000, help="clean training images read (the first of the train split)")
    tune_points: int = param(100, help="of those, the last this many tune every method")
    leaf_steps: int = param(50, help="most steps per leaf path")
    leaf_step: float = param(0.1, help="largest step of a leaf path")
    anchors: int = param(1, help="leaf paths per image (from its nearest training images)")
    seed: int = param(0, help="noise seed")
    methods: str = param(
        "default",
        help="comma list of methods, 'default' (all but bm3d) or 'all' (bm3d needs "
        "pip install leafscope[bm3d]; about 1 s per 28x28 image)",
    )
    bm3d_tune_points: int | None = param(
        None, help="tune BM3D on only the first N tuning images (default: all of them)"
    )

    def validate(self) -> None:
        if not self.sigma or any(not s > 0 for s in self.sigma):
            raise InputError(f"sigma values must be > 0, e.g. 0.1,0.25,0.5 (got {self.sigma})")
        for name in ("pool", "tune_points", "leaf_steps", "anchors"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.pool <= self.tune_points:
            raise InputError(
                f"pool must exceed tune_points (got {self.pool} and {self.tune_points}): the "
                "images left over are the nearest-image pool"
            )
        if not self.leaf_step > 0:
            raise InputError(f"leaf_step must be > 0 (got {self.leaf_step})")
        if self.bm3d_tune_points is not None and self.bm3d_tune_points < 1:
            raise InputError(f"bm3d_tune_points must be >= 1 (got {self.bm3d_tune_points})")
        resolve_methods(self.methods)


def noisy_images(
    clean: Tensor, positions: Sequence[int], num_units: int, sigma: float, seed: int
) -> Tensor:
    """``clip(clean + sigma * eps, 0, 1)`` where ``eps`` are the rows ``positions`` of one
    standard normal draw ``(num_units, *shape)`` seeded ``seed``: what
    :func:`leafscope.applications.add_noise` gives the images at those positions of the whole
    batch, whatever the shards."""
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn((num_units, *clean.shape[1:]), generator=gen, dtype=torch.float32)
    return (clean.float().cpu() + sigma * eps[torch.as_tensor(list(positions))]).clamp(0.0, 1.0)


#: The clean pool and its nearest-image index, per opened training set and pool size (once per
#: worker: the opened sets are cached by the runner).
_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pool(train: Any, pool_points: int) -> tuple[Tensor, Any]:
    from leafscope.applications.leaf import NearestImages

    per_set = _POOLS.setdefault(train, {})
    if pool_points not in per_set:
        images = train.take(range(pool_points))[0].float()
        per_set[pool_points] = (images, NearestImages(images))
    return per_set[pool_points]


@register_task
class DenoiseTask(Task):
    """Denoising by projection onto the data leaf against standard denoisers."""

    name = "denoise"
    Params = DenoiseParams
    images_only = True
    default_points = 200
    summary = "denoise by projection onto the data leaf; compare with standard denoisers"
    description = (
        "Adds Gaussian noise (clipped to [0,1]) to the selected images (the test split by "
        "default) and denoises them by a horizontal path from the nearest clean training image "
        "toward the noisy image (its end is the closest point on the data leaf), by that "
        "nearest image alone, Gaussian blur, PCA projection, total variation, NL-means, "
        "wavelet shrinkage and (optional package, when asked for) BM3D; every method's "
        "parameters are tuned per sigma on separate noisy training images, once, before the "
        "shards run. Rows: one per image, sigma and method (PSNR, SSIM, correct); summary: "
        "mean PSNR and SSIM (data range 1) and classifier accuracy per sigma and method."
    )
    columns = ("unit", "index", "label", "sigma", "method", "psnr", "ssim", "correct")

    def extra_data(self, data: Any) -> dict[str, Any]:
        purpose = "denoise draws its pool of clean points from the train split"
        return split_roles(data, purpose, train="train")

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.applications.denoise import plan_denoising

        p: DenoiseParams = self.params
        data, train = context.data(), context.data("train")
        if tuple(train.input_shape) != tuple(data.input_shape):
            raise InputError(
                f"{data.name} images have shape {tuple(data.input_shape)} but its training "
                f"images {tuple(train.input_shape)}: use a data set of one shape"
            )
        labels = data.labels[torch.as_tensor([int(u) for u in context.units])]
        if bool((labels < 0).any()):
            raise InputError(
                f"{data.name} images are unlabelled: denoise scores the classifier on them, "
                "use a labelled data set"
            )
        pool_points = min(p.pool, len(train))
        if pool_points <= p.tune_points:
            raise InputError(
                f"{train.name} has {len(train)} training images: tune_points "
                f"({p.tune_points}) must be below the training images read ({pool_points})"
            )
        train_images = train.take(range(pool_points))[0]
        plan = plan_denoising(
            context.model(), train_images, sigmas=tuple(p.sigma), tune_points=p.tune_points,
            leaf_steps=p.leaf_steps, leaf_step=p.leaf_step, n_anchors=p.anchors, seed=p.seed,
            methods=resolve_methods(p.methods), bm3d_tune_points=p.bm3d_tune_points,
            image_shape=(len(context.units), *data.input_shape),
        )  # fmt: skip
        record = plan.to_json()
        scores = record.pop("tune_scores")
        rounded = {k: [float(f"{v:.{SCORE_DIGITS}g}") for v in s] for k, s in scores.items()}
        return {"plan": record, "tune_scores": rounded}

    def _plan(self, context: Context) -> Any:
        from leafscope.applications.denoise import DenoisePlan

        return DenoisePlan.from_json({**context.meta["plan"], "tune_scores": {}})

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        plan = self._plan(context)
        model, data = context.model(), context.data()
        pool, nearest = _pool(context.data("train"), int(plan.pool_points))
        indices = [int(context.units[i]) for i in positions]
        clean_all, labels_all = data.take(indices)
        parts = []
        for s in range(0, len(positions), BLOCK):
            block = list(positions[s : s + BLOCK])
            clean, labels = clean_all[s : s + BLOCK].float().cpu(), labels_all[s : s + BLOCK]
            parts.append(
                self._rows(model, plan, pool, nearest, block, indices[s : s + BLOCK], clean,
                           labels, len(context.units))
            )  # fmt: skip
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def _rows(self, model, plan, pool, nearest, block, indices, clean, labels, num_units):
        from leafscope.applications.denoise import denoise_images, image_metrics, noise_seed

        blocks: dict[str, list[np.ndarray]] = {k: [] for k in self.columns}
        for j, sigma in enumerate(plan.sigmas):
            noisy = noisy_images(clean, block, num_units, sigma, noise_seed(plan.seed, j))
            outputs, _ = denoise_images(model, plan, j, noisy, pool, nearest)
            for name, (images, _params) in outputs.items():
                m = image_metrics(model, images, clean, labels)
                blocks["psnr"].append(np.asarray(m["psnr"], dtype=np.float64))
                blocks["ssim"].append(np.asarray(m["ssim"], dtype=np.float64))
                blocks["correct"].append(np.asarray(m["correct"]).astype(np.int64))
                blocks["sigma"].append(np.full(len(block), float(sigma)))
                blocks["method"].append(np.full(len(block), name, dtype=object))
        n_blocks = len(blocks["psnr"])
        blocks["unit"] = [np.asarray(block, dtype=np.int64)] * n_blocks
        blocks["index"] = [np.asarray(indices, dtype=np.int64)] * n_blocks
        blocks["label"] = [labels.numpy().astype(np.int64)] * n_blocks
        # (blocks, images) -> image-major rows: every row of an image sits together
        return {k: np.stack(v).T.reshape(-1) for k, v in blocks.items()}

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        return result_of(rows, context.meta, len(context.units)).to_json()

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        from leafscope.applications.denoise import DenoiseResult, DenoiseRow

        result = DenoiseResult([DenoiseRow(**r) for r in summary["results"]], summary["settings"])
        skipped = summary["settings"].get("skipped", {})
        lines = [f"skipped {name}: {reason}" for name, reason in skipped.items()]
        return [*lines, result.markdown(), "", result.wide_markdown()]

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        """``denoise_strips.png``: the first images at the largest σ, clean then every method."""
        from leafscope.applications.denoise import denoise_images, noise_seed
        from leafscope.tasks._tiles import tile_png

        plan = self._plan(context)
        j = len(plan.sigmas) - 1
        block = list(range(min(STRIP_IMAGES, len(context.units))))
        data = context.data()
        clean = data.take([int(context.units[i]) for i in block])[0].float().cpu()
        noisy = noisy_images(clean, block, len(context.units), plan.sigmas[j],
                             noise_seed(plan.seed, j))  # fmt: skip
        pool, nearest = _pool(context.data("train"), int(plan.pool_points))
        outputs, _ = denoise_images(context.model(), plan, j, noisy, pool, nearest)
        strips = [("clean", clean.numpy())]
        strips += [(name, images.numpy()) for name, (images, _) in outputs.items()]
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        title = f"sigma {plan.sigmas[j]:g}: clean, then every method"
        return [tile_png(folder / "denoise_strips.png", strips, title=title)]


def result_of(rows: Mapping[str, np.ndarray], meta: Mapping[str, Any], num_units: int) -> Any:
    """The :class:`leafscope.applications.DenoiseResult` of all rows: one row per σ and
    method, as :func:`leafscope.applications.denoise_benchmark` gives (no example images)."""
    from leafscope.applications.denoise import DenoisePlan, DenoiseResult, aggregate_row

    plan = DenoisePlan.from_json({**meta["plan"], "tune_scores": dict(meta["tune_scores"])})
    table = []
    sigma, method = np.asarray(rows["sigma"], dtype=np.float64), np.asarray(rows["method"])
    for s in plan.sigmas:
        chosen = plan.params[f"{s:g}"]
        for name in plan.methods:
            where = (sigma == float(s)) & (method == name)
            metrics = {k: np.asarray(rows[k])[where] for k in ("psnr", "ssim", "correct")}
            table.append(aggregate_row(name, s, metrics, chosen[name]))
    return DenoiseResult(table, plan.settings(int(num_units)))
