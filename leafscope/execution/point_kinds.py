"""The built-in per-point job kinds: ``denoise``, ``involutivity`` and ``generate``.

Each kind's compute function rebuilds its inputs on the worker from the task (model and data by
spec, cached per worker; noise redrawn from its seed) and gives the rows of the task's points
only; its summary is computed from all rows. Registered on import (see
:mod:`leafscope.execution.points`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.execution.executor import worker_device
from leafscope.execution.points import PointKind, PointTask, register_point_kind
from leafscope.execution.specs import cached, cached_data, cached_model

__all__ = [
    "DENOISE_COLUMNS",
    "GENERATE_COLUMNS",
    "INVOLUTIVITY_COLUMNS",
    "denoise_result",
    "denoise_rows",
    "generate_rows",
    "generate_summary",
    "involutivity_result_of",
    "involutivity_rows",
    "noise_points",
]

# --- involutivity ------------------------------------------------------------------------------

INVOLUTIVITY_COLUMNS = (
    "index",
    "dim_distribution",
    "dim_with_brackets",
    "largest_gap_index",
    "largest_gap_log10",
    "fields_singular_values",
    "singular_values",
    "seconds",
)


def noise_points(seed: int, shape: tuple[int, ...], positions: tuple[int, ...]) -> Tensor:
    """Points ``positions`` of ``torch.rand((N, *shape))`` drawn from a generator seeded
    ``seed``, for any N above them (the CPU generator fills a tensor in order, so drawing the
    first ``max(positions) + 1`` points gives the same values)."""
    gen = torch.Generator().manual_seed(int(seed))
    stop = max(positions) + 1
    return torch.rand((stop, *shape), generator=gen)[torch.as_tensor(positions)]


def involutivity_rows(task: PointTask) -> dict[str, np.ndarray]:
    """Ranks and singular values of the fields and their brackets at the task's points.

    Params: ``inputs`` (``noise`` | ``data``), ``shape`` (noise point shape), ``seed``,
    ``rtol``, ``chunk_size``; with ``data`` the points are ``task.data`` at the positions.
    """
    from leafscope.foliation.brackets import involutivity

    p = task.params
    device = worker_device(task.device)
    model = cached_model(task.model, device)
    if p["inputs"] == "noise":
        x = noise_points(p["seed"], tuple(p["shape"]), task.positions)
    else:
        x, _ = cached_data(task.data).take(task.positions)
    t0 = time.perf_counter()
    res = involutivity(
        model, x.to(device), rtol=p["rtol"], inputs=p["inputs"], chunk_size=p["chunk_size"]
    )
    n = len(task.positions)
    return {
        "index": np.asarray(task.positions, dtype=np.int64),
        "dim_distribution": np.asarray(res.dim_distribution, dtype=np.int64),
        "dim_with_brackets": np.asarray(res.dim_with_brackets, dtype=np.int64),
        "largest_gap_index": np.asarray([g[0] for g in res.largest_gap], dtype=np.int64),
        "largest_gap_log10": np.asarray([g[1] for g in res.largest_gap], dtype=np.float64),
        "fields_singular_values": res.fields_singular_values.double().numpy(),
        "singular_values": res.singular_values.double().numpy(),
        "seconds": np.full(n, (time.perf_counter() - t0) / n),
    }


def involutivity_result_of(
    settings: Mapping[str, Any], info: Mapping[str, Any], columns: Mapping[str, np.ndarray]
) -> Any:
    """The :class:`leafscope.foliation.InvolutivityResult` of all rows (``seconds``: the
    summed compute time of the shards)."""
    from leafscope.foliation.brackets import involutivity_result

    p = settings["params"]
    return involutivity_result(
        torch.from_numpy(np.array(columns["fields_singular_values"], dtype=np.float64)),
        torch.from_numpy(np.array(columns["singular_values"], dtype=np.float64)),
        rtol=p["rtol"],
        num_classes=p["num_classes"],
        space="input",
        inputs=p["inputs"],
        seconds=float(np.sum(columns["seconds"])),
        meta=dict(info.get("meta", {})),
    )


def _involutivity_summary(settings, info, columns) -> dict[str, Any]:
    payload = involutivity_result_of(settings, info, columns).to_json()
    payload.pop("points")
    return payload


# --- denoise -----------------------------------------------------------------------------------

DENOISE_COLUMNS = ("index", "label", "sigma", "method", "psnr", "ssim", "correct")


def _denoise_pool(task: PointTask) -> tuple[Tensor, Any]:
    """The clean nearest-image pool and its search index (once per worker)."""
    from leafscope.applications.leaf import NearestImages

    spec, n = task.extra["train"], int(task.params["plan"]["pool_points"])

    def build() -> tuple[Tensor, Any]:
        pool = cached_data(spec).take(range(n))[0].float()
        return pool, NearestImages(pool)

    return cached(("denoise-pool", spec, n), build)


def denoise_rows(task: PointTask) -> dict[str, np.ndarray]:
    """PSNR, SSIM and classifier correctness of every method at every σ on the task's test
    images, one row per (image, σ, method), image-major.

    Params: ``plan`` (:meth:`leafscope.applications.denoise.DenoisePlan.to_json`); the noise of
    σ number j is drawn over all ``task.num_points`` test images, as in
    :func:`leafscope.applications.denoise_benchmark`.
    """
    from leafscope.applications.denoise import (
        DenoisePlan,
        add_noise,
        denoise_images,
        image_metrics,
        noise_seed,
    )

    plan = DenoisePlan.from_json(task.params["plan"])
    device = worker_device(task.device)
    model = cached_model(task.model, device)
    pool, nearest = _denoise_pool(task)
    clean_all, labels_all = cached_data(task.data).take(range(task.num_points))
    clean_all = clean_all.float().cpu()
    pos = torch.as_tensor(task.positions)
    clean, labels = clean_all[pos], labels_all[pos]
    blocks: dict[str, list[np.ndarray]] = {k: [] for k in DENOISE_COLUMNS}
    for j, sigma in enumerate(plan.sigmas):
        noisy = add_noise(clean_all, sigma, noise_seed(plan.seed, j))[pos]
        outputs, _ = denoise_images(model, plan, j, noisy, pool, nearest)
        for name, (images, _params) in outputs.items():
            m = image_metrics(model, images, clean, labels)
            blocks["psnr"].append(m["psnr"])
            blocks["ssim"].append(m["ssim"])
            blocks["correct"].append(m["correct"].astype(np.int64))
            blocks["sigma"].append(np.full(len(pos), float(sigma)))
            blocks["method"].append(np.full(len(pos), name, dtype=object))
    n_blocks = len(blocks["psnr"])
    blocks["index"] = [np.asarray(task.positions, dtype=np.int64)] * n_blocks
    blocks["label"] = [labels.numpy().astype(np.int64)] * n_blocks
    # (blocks, images) -> image-major rows: every row of a point sits together
    return {k: np.stack(v).T.reshape(-1) for k, v in blocks.items()}


def denoise_result(
    settings: Mapping[str, Any], info: Mapping[str, Any], columns: Mapping[str, np.ndarray]
) -> Any:
    """The :class:`leafscope.applications.DenoiseResult` of all rows (one row per σ and
    method, as :func:`leafscope.applications.denoise_benchmark` gives; no example images)."""
    from leafscope.applications.denoise import DenoisePlan, DenoiseResult, aggregate_row

    plan = DenoisePlan.from_json(settings["params"]["plan"])
    rows = []
    sigma, method = np.asarray(columns["sigma"]), np.asarray(columns["method"])
    for s in plan.sigmas:
        chosen = plan.params[f"{s:g}"]
        for name in plan.methods:
            where = (sigma == float(s)) & (method == name)
            metrics = {k: np.asarray(columns[k])[where] for k in ("psnr", "ssim", "correct")}
            rows.append(aggregate_row(name, s, metrics, chosen[name]))
    result_settings = plan.settings(int(settings["num_points"]))
    result_settings.update(info.get("result_settings", {}))
    return DenoiseResult(rows, result_settings)


def _denoise_summary(settings, info, columns) -> dict[str, Any]:
    return denoise_result(settings, info, columns).to_json()


# --- generate ----------------------------------------------------------------------------------

GENERATE_COLUMNS = (
    "index",
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


def generate_rows(task: PointTask) -> dict[str, np.ndarray]:
    """Leaf random walks from the task's start images (walk i seeded
    :func:`leafscope.applications.generate.walk_seed` ``(seed, i)``, so a walk does not depend
    on its shard).

    Params: ``starts`` (index of each walk's start image in ``task.data``), ``steps``, ``step``,
    ``seed``, ``box`` (``[lo, hi]`` or None).
    """
    from leafscope.applications.generate import leaf_random_walk, walk_seed
    from leafscope.models.inspect import model_device

    p = task.params
    device = worker_device(task.device)
    model = cached_model(task.model, device)
    starts = [int(p["starts"][i]) for i in task.positions]
    images, _ = cached_data(task.data).take(starts)
    walk = leaf_random_walk(
        model,
        images,
        steps=p["steps"],
        step=p["step"],
        seed=p["seed"],
        box=None if p["box"] is None else tuple(p["box"]),
        seeds=[walk_seed(p["seed"], i) for i in task.positions],
    )
    with torch.no_grad():
        probs = torch.softmax(model(walk.start.to(model_device(model))), 1).cpu()
    start_probability, start_predicted = probs.max(1)
    return {
        "index": np.asarray(task.positions, dtype=np.int64),
        "start_index": np.asarray(starts, dtype=np.int64),
        "start_predicted": start_predicted.numpy().astype(np.int64),
        "start_probability": start_probability.double().numpy(),
        "predicted": walk.predicted.numpy().astype(np.int64),
        "probability": walk.probability.double().numpy(),
        "accepted_steps": walk.accepted.numpy().astype(np.int64),
        "displacement": walk.displacement.double().numpy(),
        "start": walk.start.flatten(1).double().numpy(),
        "image": walk.images.flatten(1).double().numpy(),
    }


def generate_summary(
    settings: Mapping[str, Any], info: Mapping[str, Any], columns: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The ``generate.json`` record of all walks: settings, share that kept the class, mean
    displacement and the per-walk lists."""
    p = settings["params"]
    predicted = np.asarray(columns["predicted"])
    return {
        "class": p["label"],
        "steps": p["steps"],
        "step": p["step"],
        "seed": p["seed"],
        "checkpoint": info.get("checkpoint"),
        "kept_class": float(np.mean(predicted == p["label"])),
        "mean_displacement": float(np.mean(columns["displacement"])),
        "predicted": predicted.tolist(),
        "probability": np.asarray(columns["probability"]).tolist(),
        "accepted_steps": np.asarray(columns["accepted_steps"]).tolist(),
        "displacement": np.asarray(columns["displacement"]).tolist(),
        "start_index": np.asarray(columns["start_index"]).tolist(),
    }


register_point_kind(
    PointKind("involutivity", involutivity_rows, _involutivity_summary, INVOLUTIVITY_COLUMNS)
)
register_point_kind(PointKind("denoise", denoise_rows, _denoise_summary, DENOISE_COLUMNS))
register_point_kind(PointKind("generate", generate_rows, generate_summary, GENERATE_COLUMNS))
