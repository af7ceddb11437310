"""``attack``: fooling rate against L2 budget of the spectral attacks (OSSA, TSSA) and of the
gradient baselines (FGSM, PGD) at the selected points (``docs/geometry.md`` §6).

One row per point: its data index, label and clean prediction, λ₁ of G, and per
(method, budget, seed) — in the order of ``context.meta["layout"]`` — whether the attack fooled
the model (prediction ≠ clean prediction), the prediction at the attacked point, the L2 length
of the realised perturbation and the Fisher–Rao distance between p(x) and p(x_adv). The
attacked images of the first seed are kept in the rows and written by ``write_files`` as
``_files/adversarial.npz`` (``images``, ``index``, ``method``, ``budget``, ``predicted``,
``fooled``), with ``_files/fooling_rates.json``, the data of the figure of the fooling rate
against the budget that :func:`leafscope.report.results.write_result_figures` draws
(``fooling_rate.png``).

Seeds: PGD starts at a random point of the ε-ball, drawn per point from
``seed·1000003 + index``; OSSA, TSSA and FGSM are deterministic (the same for every seed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, concat_rows, param, register_task

__all__ = ["AttackParams", "AttackTask", "fooling_table", "mcnemar_p", "paired_comparison"]

METHOD_NAMES = ("ossa", "tssa", "fgsm", "pgd")
#: Every attack the task accepts (``fgsm2``: TSSA's two-step schedule along the gradient, a
#: control; not run by default).
KNOWN_METHODS = (*METHOD_NAMES, "fgsm2")
DETERMINISTIC = ("ossa", "tssa", "fgsm", "fgsm2")
SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackParams(Params):
    """Parameters of :class:`AttackTask`.

    Attributes:
        methods: attacks to run, from ``ossa``, ``tssa``, ``fgsm``, ``pgd`` and the control
            ``fgsm2`` (two gradient steps split like TSSA's).
        budgets: L2 budgets ε (pixel units; MNIST images have norm ≈ 9).
        seeds: number of seeds (0..N−1) of PGD's random start.
        tssa_ratio: TSSA's first-step share of the budget (0.6: the authors' value).
        pgd_steps: PGD gradient steps.
        pgd_step_size: PGD step length as a fraction of ε.
        clip_range: the data range attacked points are clipped to, ``(low, high)``.
        dtype: compute dtype of the model and of G.
        batch_size: points attacked together.
        keep_images: keep the attacked images of the first seed (for the .npz).
    """

    methods: tuple[str, ...] = param(
        METHOD_NAMES, help="comma-separated attacks: ossa, tssa, fgsm, pgd (control: fgsm2)"
    )
    budgets: tuple[float, ...] = param((0.5, 1.0, 2.0, 4.0), help="comma-separated L2 budgets")
    seeds: int = param(3, help="number of seeds (0..N-1) of the random PGD starts")
    tssa_ratio: float = param(
        0.6, help="TSSA's (and fgsm2's) first-step share of the budget (authors: 0.6)"
    )
    pgd_steps: int = param(20, help="PGD gradient steps")
    pgd_step_size: float = param(0.25, help="PGD step length as a fraction of the budget")
    clip_range: tuple[float, ...] = param((0.0, 1.0), help="data range LOW,HIGH of the images")
    dtype: str = param("float64", help="compute dtype", choices=tuple(DTYPES))
    batch_size: int = param(16, help="points attacked together")
    keep_images: bool = param(True, help="keep the attacked images of the first seed (.npz)")

    def validate(self) -> None:
        if not self.methods:
            raise InputError("methods must name at least one attack (ossa, tssa, fgsm, pgd)")
        unknown = [m for m in self.methods if m not in KNOWN_METHODS]
        if unknown:
            raise InputError(
                f"methods: unknown attack(s) {unknown}: use ossa, tssa, fgsm, pgd or fgsm2"
            )
        if len(set(self.methods)) != len(self.methods):
            raise InputError(f"methods must not repeat (got {list(self.methods)})")
        if not self.budgets or any(not (b > 0 and np.isfinite(b)) for b in self.budgets):
            raise InputError(f"budgets must be L2 lengths > 0 (got {list(self.budgets)})")
        for name in ("seeds", "pgd_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1 (got {value!r})")
        if not 0 < self.tssa_ratio <= 1:
            raise InputError(f"tssa_ratio must be in (0, 1] (got {self.tssa_ratio!r})")
        if not self.pgd_step_size > 0:
            raise InputError(f"pgd_step_size must be > 0 (got {self.pgd_step_size!r})")
        if len(self.clip_range) != 2 or not self.clip_range[0] < self.clip_range[1]:
            raise InputError(f"clip_range must be LOW,HIGH with LOW < HIGH (got {self.clip_range})")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")


def _layout(p: AttackParams) -> list[tuple[str, float, int]]:
    return [(m, float(b), s) for m in p.methods for b in p.budgets for s in range(p.seeds)]


def fooling_table(
    fooled: np.ndarray,
    layout: Sequence[Sequence[Any]],
    norms: np.ndarray | None = None,
    fisher_rao: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{method, budget, fooling_rate, ...}`` from the per-point 0/1 matrix ``fooled``
    (points × layout): the rate is the mean over points and seeds, ``per_seed`` the rate of each
    seed, ``std`` their standard deviation."""
    fooled = np.asarray(fooled, dtype=np.float64)
    keys: dict[tuple[str, float], list[int]] = {}
    for col, (method, budget, _seed) in enumerate(layout):
        keys.setdefault((str(method), float(budget)), []).append(col)
    out = []
    for (method, budget), cols in keys.items():
        per_seed = fooled[:, cols].mean(axis=0) if len(fooled) else np.zeros(len(cols))
        row = {
            "method": method,
            "budget": budget,
            "fooling_rate": float(per_seed.mean()),
            "std": float(per_seed.std()),
            "per_seed": [float(v) for v in per_seed],
            "points": int(len(fooled)),
        }
        if norms is not None:
            row["mean_perturbation_norm"] = float(np.mean(np.asarray(norms)[:, cols]))
        if fisher_rao is not None:
            row["mean_fisher_rao_distance"] = float(np.mean(np.asarray(fisher_rao)[:, cols]))
        out.append(row)
    return out


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial probability, under p = 1/2, of a split of
    the ``only_a + only_b`` discordant points at least as uneven as the observed one."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def paired_comparison(
    fooled: np.ndarray, layout: Sequence[Sequence[Any]], first: str, second: str
) -> list[dict[str, Any]]:
    """Per budget, the points fooled by ``first`` only, by ``second`` only, by both and by
    neither (seed 0), with the exact McNemar p-value of the discordant split."""
    fooled = np.asarray(fooled) > 0.5
    cols = {(str(m), float(b)): i for i, (m, b, s) in enumerate(layout) if int(s) == 0}
    out = []
    for budget in sorted({b for (m, b) in cols if m == first}):
        if (second, budget) not in cols:
            continue
        a, b = fooled[:, cols[(first, budget)]], fooled[:, cols[(second, budget)]]
        only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
        out.append(
            {
                "budget": budget,
                f"{first}_only": only_a,
                f"{second}_only": only_b,
                "both": int((a & b).sum()),
                "neither": int((~a & ~b).sum()),
                "mcnemar_p": mcnemar_p(only_a, only_b),
            }
        )
    return out


@register_task
class AttackTask(Task):
    """Fooling rate against L2 budget of OSSA, TSSA, FGSM and PGD."""

    name = "attack"
    Params = AttackParams
    default_points = 64
    images_only = False
    summary = "adversarial attacks (OSSA, TSSA, FGSM, PGD): fooling rate against L2 budget"
    description = (
        "Untargeted L2 attacks against the model's own prediction at the selected points: "
        "OSSA (one step along the top eigenvector of G, Zhao et al. 2019), TSSA (two steps, "
        "the second along the top eigenvector at the intermediate point, Tron et al. 2024), "
        "FGSM (L2) and PGD (L2, random start per seed); points clipped to the data range. "
        "Rows per point, summary rows {method, budget, fooling_rate} (mean over seeds), the "
        "attacked images under --out in _files/adversarial.npz and a figure."
    )
    columns = (
        "unit",
        "index",
        "label",
        "clean_predicted",
        "clean_max_probability",
        "lambda1",
        "fooled",
        "adversarial_predicted",
        "perturbation_norm",
        "fisher_rao_distance",
        "images",
        "seconds",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        num_classes = context.num_classes()
        p: AttackParams = self.params
        images = [(m, float(b)) for m in p.methods for b in p.budgets] if p.keep_images else []
        return {
            "num_classes": num_classes,
            "shape": list(data.input_shape),
            "layout": [list(t) for t in _layout(p)],
            "image_layout": [list(t) for t in images],
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        model = context.model()
        parts = [
            self._rows(model, x.to(context.device), y, block, indices, context)
            for block, indices, x, y in context.point_batches(positions, self.params.batch_size)
        ]
        return concat_rows(parts)

    def _rows(self, model, x, y, block, indices, context) -> dict[str, np.ndarray]:
        from leafscope.applications.attacks import attack
        from leafscope.information import DataInformation

        p: AttackParams = self.params
        dtype = DTYPES[p.dtype]
        box = (float(p.clip_range[0]), float(p.clip_range[1]))
        t0 = time.perf_counter()
        n = len(block)
        info = DataInformation(model, x, dtype=dtype)
        probs = info.probs.double().cpu()
        layout = _layout(p)
        fooled = np.zeros((n, len(layout)))
        predicted = np.zeros((n, len(layout)))
        norms = np.zeros((n, len(layout)))
        fr = np.zeros((n, len(layout)))
        images = []
        done: dict[tuple[str, float], Any] = {}
        for col, (method, budget, seed) in enumerate(layout):
            key = (method, budget)
            if method in DETERMINISTIC and key in done:
                outcome = done[key]
            else:
                seeds = [seed * SEED_STRIDE + i for i in indices]
                outcome = attack(
                    method, model, x, budget, dtype=dtype, box=box, ratio=p.tssa_ratio,
                    steps=p.pgd_steps, step_size=p.pgd_step_size, seeds=seeds,
                )  # fmt: skip
                done[key] = outcome
            fooled[:, col] = outcome.fooled.cpu().numpy()
            predicted[:, col] = outcome.predicted.cpu().numpy()
            norms[:, col] = outcome.perturbation_norm.double().cpu().numpy()
            fr[:, col] = outcome.fisher_rao_distance.double().cpu().numpy()
            if p.keep_images and seed == 0:
                images.append(outcome.x_adv.float().cpu().reshape(n, -1).numpy())
        image_cols = np.concatenate(images, axis=1) if images else np.full((n, 1), np.nan)
        return {
            "unit": np.asarray(block, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
            "label": y.numpy().astype(np.int64),
            "clean_predicted": probs.argmax(dim=1).numpy().astype(np.int64),
            "clean_max_probability": probs.max(dim=1).values.numpy(),
            "lambda1": info.eigenvalues()[:, 0].double().cpu().numpy(),
            "fooled": fooled,
            "adversarial_predicted": predicted,
            "perturbation_norm": norms,
            "fisher_rao_distance": fr,
            "images": image_cols.astype(np.float32),
            "seconds": np.full(n, (time.perf_counter() - t0) / n),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        layout = context.meta.get("layout") or _layout(self.params)
        table = fooling_table(
            rows["fooled"], layout, rows["perturbation_norm"], rows["fisher_rao_distance"]
        )
        label = np.asarray(rows["label"])
        clean = np.asarray(rows["clean_predicted"])
        summary = {
            "points": int(len(label)),
            "clean_accuracy": float((label == clean).mean()) if len(label) else None,
            "seeds": int(self.params.seeds),
            "fooling_rates": table,
        }
        if {"tssa", "ossa"} <= set(self.params.methods):
            summary["tssa_vs_ossa"] = paired_comparison(rows["fooled"], layout, "tssa", "ossa")
        return summary

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [f"points={summary['points']} clean accuracy={summary['clean_accuracy']:.4g}"]
        for row in summary["fooling_rates"]:
            lines.append(
                f"{row['method']:>5} budget={row['budget']:g} fooling_rate="
                f"{row['fooling_rate']:.4f} (std {row['std']:.4f} over {len(row['per_seed'])} "
                f"seeds)"
            )
        for row in summary.get("tssa_vs_ossa", []):
            lines.append(
                f"budget={row['budget']:g}: fooled by TSSA only {row['tssa_only']}, by OSSA only "
                f"{row['ossa_only']} (McNemar p={row['mcnemar_p']:.3g})"
            )
        return lines

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {
            "rows": [
                {k: r[k] for k in ("method", "budget", "fooling_rate", "std", "per_seed")}
                for r in summary["fooling_rates"]
            ],
            "dtype": self.params.dtype,
        }

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        from leafscope.io import write_json, write_npz

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        image_layout = context.meta.get("image_layout") or []
        layout = [tuple(t) for t in (context.meta.get("layout") or _layout(self.params))]
        if image_layout:
            shape = tuple(int(s) for s in context.meta["shape"])
            n = len(rows["unit"])
            size = int(np.prod(shape))
            blocks = np.asarray(rows["images"], dtype=np.float32)
            blocks = blocks.reshape(n, len(image_layout), size)
            col = {(m, float(b)): layout.index((m, float(b), 0)) for m, b in image_layout}
            fooled = np.asarray(rows["fooled"])
            predicted = np.asarray(rows["adversarial_predicted"])
            arrays = {
                "images": blocks.transpose(1, 0, 2).reshape(-1, *shape),
                "index": np.tile(np.asarray(rows["index"], dtype=np.int64), len(image_layout)),
                "method": np.repeat([m for m, _ in image_layout], n).astype("U8"),
                "budget": np.repeat([float(b) for _, b in image_layout], n),
                "predicted": np.concatenate(
                    [predicted[:, col[(m, float(b))]] for m, b in image_layout]
                ).astype(np.int64),
                "fooled": np.concatenate(
                    [fooled[:, col[(m, float(b))]] for m, b in image_layout]
                ).astype(bool),
            }
            written.append(write_npz(folder / "adversarial.npz", **arrays))
        # the figure's data; leafscope.report.results draws fooling_rate.png from it
        written.append(
            write_json(
                folder / "fooling_rates.json",
                {"points": summary["points"], "rows": summary["fooling_rates"]},
            )
        )
        return written
