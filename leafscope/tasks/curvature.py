"""``curvature``: second-order geometry of G at the selected points (``docs/geometry.md``).

One row per point: its data index and label, the prediction, the rank of G and whether it is
full (C − 1), the C−1 eigenvalues of G, and three second-order quantities, all matrix-free in
``dtype`` (float64 by default):

* ``transverse_sectional_curvature``: sectional curvatures of the metric G induces on the local
  leaf space (the quotient by the level sets of p, identified with the slice ``x + D_x``), on
  ``planes`` random 2-planes of D_x (seeded per point by ``seed`` and the data index; uniform
  for the pixel metric, or with ``sampling=transverse`` for G). G is the pull-back of the
  Fisher–Rao metric by p, so at every full-rank point the leaf space is a piece of the sphere
  of radius 2 and every value is 1/4 (C ≥ 3). The computation does not return that number: it
  evaluates the Gauss equation for the image of the slice under ``q = 2√p`` from second
  derivatives of the model (``sigma_ratio`` = σ_{C−1}/σ_1 tells how saturated the point is).
  NaN where the rank is below 2.
* ``integrability_norm``: ``(Σ_{i<j} |Ω(v_i, v_j)|²)^{1/2}`` of the integrability tensor
  ``Ω(X, Y) = P_ker[X, Y]`` of ``D = Im G`` on the eigenvectors v_i of G (1/pixel), with the
  norm of the whole brackets and their ratio (zero for ReLU nets inside a linear region).
* ``principal_curvatures``: for the top ``normals`` eigenvectors v_k of G (oriented toward the
  predicted class), the ``count`` largest-magnitude principal curvatures of the kernel leaf
  (the level set of p through x) along v_k, by Lanczos on Hessian-vector products, with their
  residuals; flattened ``(normals × count)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, concat_rows, param, register_task

__all__ = ["CurvatureParams", "CurvatureTask"]

#: The sectional curvature every full-rank point must show (Fisher–Rao sphere of radius 2).
QUARTER = 0.25
#: Seed stride: the planes and Lanczos start vectors of the point with data index i use
#: ``seed * SEED_STRIDE + i`` (the same in any shard).
SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True, kw_only=True)
class CurvatureParams(Params):
    """Parameters of :class:`CurvatureTask`.

    Attributes:
        dtype: compute dtype (float64 recommended: the small eigenvalues of G matter).
        planes: random 2-planes of D_x per point for the transverse sectional curvature.
        sampling: ``pixel`` (uniform among the 2-planes of D_x for the pixel metric; robust at
            saturated points) or ``transverse`` (uniform for the metric G induces).
        normals: top eigen-directions of G used as normals of the kernel leaf (clamped to C−1).
        count: principal curvatures kept per normal (largest magnitude).
        steps: Lanczos steps (Hessian-vector products) per normal.
        seed: seed of the planes and Lanczos start vectors (per point: seed·1000003 + index).
        rtol: rank tolerance relative to the largest singular value of the factor
            (None: ``max(C, n)·eps``).
        integrability: compute the integrability tensor (r jvps of an r-row Jacobian per point).
        principal: compute the principal curvatures of the kernel leaves.
        batch_size: points decoded and computed together.
    """

    dtype: str = param("float64", help="compute dtype", choices=tuple(DTYPES))
    planes: int = param(4, help="random 2-planes of D_x per point (transverse curvature)")
    sampling: str = param(
        "pixel",
        help="how the planes are drawn: pixel (uniform in D_x) or transverse (uniform for G)",
        choices=("pixel", "transverse"),
    )
    normals: int = param(3, help="top eigenvectors of G used as normals of the kernel leaf")
    count: int = param(5, help="principal curvatures kept per normal (largest |kappa|)")
    steps: int = param(40, help="Lanczos steps (Hessian-vector products) per normal")
    seed: int = param(0, help="seed of the random planes and Lanczos start vectors")
    rtol: float | None = param(None, help="rank tolerance relative to the largest singular value")
    integrability: bool = param(True, help="compute the integrability tensor of D = Im G")
    principal: bool = param(True, help="compute the principal curvatures of the kernel leaves")
    batch_size: int = param(8, help="points computed together")

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.sampling not in ("pixel", "transverse"):
            raise InputError(f"sampling must be pixel or transverse (got {self.sampling!r})")
        for name in ("planes", "normals", "count", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1 (got {value!r})")
        if self.rtol is not None and not (0 < self.rtol < 1):
            raise InputError(f"rtol must be in (0, 1) or None (got {self.rtol!r})")


def _nan_to_none(values: Any) -> Any:
    if isinstance(values, list):
        return [_nan_to_none(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values


@register_task
class CurvatureTask(Task):
    """Transverse sectional curvature, integrability tensor and kernel-leaf curvature of G."""

    name = "curvature"
    Params = CurvatureParams
    default_points = 8
    summary = "second-order geometry of G: transverse curvature, integrability, leaf curvature"
    description = (
        "Per point (float64 by default, matrix-free): the sectional curvatures of the metric G "
        "induces on the local leaf space on random 2-planes of D_x (1/4 at every full-rank "
        "point: G is the pull-back of the Fisher-Rao metric, a sphere of radius 2), the norm of "
        "the integrability tensor of D = Im G (the part of [X, Y] outside D), and the principal "
        "curvatures of the kernel leaf (level set of p) along the top eigenvectors of G. "
        "See docs/geometry.md."
    )
    columns = (
        "unit",
        "index",
        "label",
        "predicted",
        "max_probability",
        "rank",
        "full_rank",
        "sigma_ratio",
        "eigenvalues",
        "transverse_sectional_curvature",
        "integrability_norm",
        "bracket_norm",
        "integrability_ratio",
        "integrability_singular_values",
        "principal_curvatures",
        "principal_residuals",
        "seconds",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        num_classes = context.num_classes()
        p: CurvatureParams = self.params
        n = int(np.prod(data.input_shape))
        return {
            "num_classes": num_classes,
            "normals": min(p.normals, num_classes - 1),
            "singular_width": max(1, (num_classes - 1) * (num_classes - 2) // 2),
            "kernel_dimension": n - (num_classes - 1),
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        model = context.model()
        parts = [
            self._rows(model, x.to(context.device), y, block, indices, context)
            for block, indices, x, y in context.point_batches(positions, self.params.batch_size)
        ]
        return concat_rows(parts)

    def _rows(self, model, x, y, block, indices, context) -> dict[str, np.ndarray]:
        from leafscope.geometry import leaf_geometry

        p: CurvatureParams = self.params
        meta = context.meta
        c, normals = int(meta["num_classes"]), int(meta["normals"])
        n = len(block)
        seeds = [p.seed * SEED_STRIDE + i for i in indices]
        t0 = time.perf_counter()
        geo = leaf_geometry(
            model, x, planes=p.planes, normals=normals, count=p.count, steps=p.steps,
            seeds=seeds, sampling=p.sampling, integrability=p.integrability, principal=p.principal,
            dtype=DTYPES[p.dtype], rtol=p.rtol,
        )  # fmt: skip
        seconds = (time.perf_counter() - t0) / n
        frame = geo.frame
        width = int(meta["singular_width"])
        singular = np.full((n, width), np.nan)
        norm = bracket = ratio = np.full(n, np.nan)
        if geo.integrability is not None:
            om = geo.integrability
            norm = om.norm.double().cpu().numpy()
            bracket = om.bracket_norm.double().cpu().numpy()
            ratio = om.ratio.double().cpu().numpy()
            sv = om.singular_values.double().cpu().numpy()
            singular[:, : sv.shape[1]] = sv[:, :width]
        principal = residual = np.full((n, normals * p.count), np.nan)
        if geo.principal is not None:
            principal = geo.principal.values.double().cpu().reshape(n, -1).numpy()
            residual = geo.principal.residuals.double().cpu().reshape(n, -1).numpy()
        rank = frame.rank.cpu().numpy().astype(np.int64)
        return {
            "unit": np.asarray(block, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
            "label": y.numpy().astype(np.int64),
            "predicted": frame.predicted.cpu().numpy().astype(np.int64),
            "max_probability": frame.probs.double().max(dim=1).values.cpu().numpy(),
            "rank": rank,
            "full_rank": rank == c - 1,
            "sigma_ratio": (frame.sigma[:, -1] / frame.sigma[:, 0]).double().cpu().numpy(),
            "eigenvalues": (frame.sigma.double() ** 2).cpu().numpy(),
            "transverse_sectional_curvature": geo.sectional_curvature.double().cpu().numpy(),
            "integrability_norm": norm,
            "bracket_norm": bracket,
            "integrability_ratio": ratio,
            "integrability_singular_values": singular,
            "principal_curvatures": principal,
            "principal_residuals": residual,
            "seconds": np.full(n, seconds),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        full = np.asarray(rows["full_rank"], dtype=bool)
        k = np.asarray(rows["transverse_sectional_curvature"], dtype=np.float64)
        kf = k[full]
        finite = kf[np.isfinite(kf)]
        ratio = np.asarray(rows["integrability_ratio"], dtype=np.float64)
        norm = np.asarray(rows["integrability_norm"], dtype=np.float64)
        pc = np.asarray(rows["principal_curvatures"], dtype=np.float64)
        normals = int(context.meta.get("normals", 1))
        largest = np.abs(pc).reshape(len(pc), normals, -1)
        with np.errstate(all="ignore"):
            largest = np.nanmax(largest, axis=2) if largest.size else largest

        def median(a: np.ndarray) -> float | None:
            a = a[np.isfinite(a)]
            return float(np.median(a)) if a.size else None

        return {
            "points": int(len(full)),
            "full_rank_points": int(full.sum()),
            "expected_transverse_curvature": QUARTER,
            "transverse_curvature_mean": float(finite.mean()) if finite.size else None,
            "transverse_curvature_min": float(finite.min()) if finite.size else None,
            "transverse_curvature_max": float(finite.max()) if finite.size else None,
            "transverse_curvature_max_deviation": (
                float(np.abs(finite - QUARTER).max()) if finite.size else None
            ),
            "median_integrability_norm": median(norm),
            "median_integrability_ratio": median(ratio),
            "median_largest_principal_curvature": [
                median(largest[:, i]) for i in range(largest.shape[1] if largest.ndim == 2 else 0)
            ],
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        def fmt(v: Any) -> str:
            return "n/a" if v is None else f"{v:.6g}"

        return [
            f"points={summary['points']} full_rank={summary['full_rank_points']} "
            f"transverse K: mean={fmt(summary['transverse_curvature_mean'])} "
            f"max|K-1/4|={fmt(summary['transverse_curvature_max_deviation'])} "
            f"(expected {QUARTER})",
            f"integrability: median norm={fmt(summary['median_integrability_norm'])} "
            f"median ratio={fmt(summary['median_integrability_ratio'])}; leaf curvature: "
            "median largest |kappa| per normal="
            + ",".join(fmt(v) for v in summary["median_largest_principal_curvature"]),
        ]

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        normals = int(context.meta.get("normals", 1))
        count = self.params.count
        points = []
        for i in range(len(rows["unit"])):
            pc = np.asarray(rows["principal_curvatures"][i], dtype=np.float64)
            res = np.asarray(rows["principal_residuals"][i], dtype=np.float64)
            points.append(
                {
                    "index": int(rows["index"][i]),
                    "label": int(rows["label"][i]),
                    "predicted": int(rows["predicted"][i]),
                    "max_probability": float(rows["max_probability"][i]),
                    "rank": int(rows["rank"][i]),
                    "full_rank": bool(rows["full_rank"][i]),
                    "sigma_ratio": float(rows["sigma_ratio"][i]),
                    "eigenvalues": np.asarray(rows["eigenvalues"][i]).tolist(),
                    "transverse_sectional_curvature": _nan_to_none(
                        np.asarray(rows["transverse_sectional_curvature"][i]).tolist()
                    ),
                    "integrability_norm": _nan_to_none(float(rows["integrability_norm"][i])),
                    "bracket_norm": _nan_to_none(float(rows["bracket_norm"][i])),
                    "integrability_ratio": _nan_to_none(float(rows["integrability_ratio"][i])),
                    "principal_curvatures": _nan_to_none(pc.reshape(normals, count).tolist()),
                    "principal_residuals": _nan_to_none(res.reshape(normals, count).tolist()),
                }
            )
        return {"dtype": self.params.dtype, "normals": normals, "points": points}
