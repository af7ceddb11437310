"""``adversarial``: detection of adversarial examples by the geometry of G (λ₁, trace, the
turning of the top eigenvector, the kernel-leaf curvature) against LID and Mahalanobis.

Per selected point: its clean scores and, per attack and seed, the scores of the attacked point
and whether the attack fooled the model (``docs/geometry.md`` §7). The LID reference set and the
Mahalanobis Gaussians come from ``reference`` clean points of the *train* split (a seeded
sample, the same on every worker). Summary: per evaluated attack, per detector, the AUROC
(clean correctly classified points against the successful attacks from them) after tuning the
detector's sign and variant on the other attacks only, as mean and std over the seeds (PGD's
random starts; OSSA and FGSM are deterministic).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.tasks.base import (
    Context,
    Params,
    Task,
    concat_rows,
    param,
    register_task,
    split_roles,
)

__all__ = ["AdversarialParams", "AdversarialTask"]

ATTACKS = ("pgd", "ossa", "tssa", "fgsm", "fgsm2")
SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialParams(Params):
    """Parameters of :class:`AdversarialTask`.

    Attributes:
        attacks: the attacks whose examples are detected (at least two: each is scored after
            tuning on the others).
        budget: their L2 budget ε.
        seeds: number of seeds (0..N−1) of the random PGD starts.
        reference: clean train points for the LID neighbours and the Mahalanobis fit.
        lid_k: candidate neighbour counts of LID (chosen on the held-out attacks).
        turning_step: step h of the eigenvector-turning score.
        leaf_curvature: also score the largest |principal curvature| along v₁ (Lanczos).
        pgd_steps: PGD gradient steps.
        dtype: compute dtype of G.
        batch_size: points computed together.
    """

    attacks: tuple[str, ...] = param(("pgd", "ossa"), help="comma-separated attacks (>= 2)")
    budget: float = param(2.0, help="L2 budget of the attacks")
    seeds: int = param(3, help="number of seeds (0..N-1) of the random PGD starts")
    reference: int = param(1000, help="clean train points for LID and Mahalanobis")
    lid_k: tuple[int, ...] = param((10, 20, 40), help="candidate LID neighbour counts")
    turning_step: float = param(0.05, help="step of the eigenvector-turning score")
    leaf_curvature: bool = param(False, help="also score the kernel-leaf curvature (Lanczos)")
    pgd_steps: int = param(20, help="PGD gradient steps")
    dtype: str = param("float64", help="compute dtype", choices=tuple(DTYPES))
    batch_size: int = param(32, help="points computed together")

    def validate(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise InputError(f"attacks: unknown {unknown}: use {', '.join(ATTACKS)}")
        if len(set(self.attacks)) < 2:
            raise InputError(
                f"attacks must name at least two different attacks (got {list(self.attacks)}): "
                "each is scored after tuning on the others"
            )
        if not self.budget > 0:
            raise InputError(f"budget must be > 0 (got {self.budget!r})")
        for name in ("seeds", "reference", "pgd_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1 (got {value!r})")
        if not self.lid_k or min(self.lid_k) < 2 or max(self.lid_k) > self.reference:
            raise InputError(f"lid_k must lie in [2, reference] (got {list(self.lid_k)})")
        if not self.turning_step > 0:
            raise InputError(f"turning_step must be > 0 (got {self.turning_step!r})")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")


def _families(p: AdversarialParams) -> dict[str, list[str]]:
    fam = {"lambda1": ["lambda1"], "trace": ["trace"], "turning": ["turning"]}
    fam["msp"] = ["msp"]
    if p.leaf_curvature:
        fam["leaf_curvature"] = ["leaf_curvature"]
    fam["lid"] = [f"lid_{k}" for k in p.lid_k]
    fam["mahalanobis"] = ["mahalanobis"]
    return fam


def _variants(p: AdversarialParams) -> list[str]:
    return [v for vs in _families(p).values() for v in vs]


def _layout(p: AdversarialParams) -> list[tuple[str, int]]:
    return [(a, s) for a in p.attacks for s in range(p.seeds)]


@register_task
class AdversarialTask(Task):
    """Adversarial detection: geometric scores of G against LID and Mahalanobis."""

    name = "adversarial"
    Params = AdversarialParams
    default_points = 200
    summary = (
        "adversarial detection: lambda1, trace, turning, leaf curvature vs LID, Mahalanobis, MSP"
    )
    description = (
        "Attack the selected points (PGD, OSSA, ...) with an L2 budget and score clean and "
        "attacked points by the geometry of G (largest eigenvalue, trace, turning of the top "
        "eigenvector, optionally the kernel-leaf curvature) and by the baselines 1 - max p, LID "
        "and Mahalanobis on the penultimate features (reference: clean train points). AUROC "
        "per attack with each detector's sign and variant tuned on the other attacks only; "
        "mean and std over seeds."
    )
    columns = (
        "unit",
        "index",
        "label",
        "clean_predicted",
        "correct",
        "clean_scores",
        "adversarial_scores",
        "fooled",
    )

    def extra_data(self, data: Any) -> dict[str, Any]:
        purpose = "adversarial fits its reference statistics (LID, Mahalanobis) on the train split"
        return split_roles(data, purpose, reference="train")

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.data.spec import select_points

        p: AdversarialParams = self.params
        ref = context.data("reference")
        if p.reference > len(ref.labels):
            raise InputError(f"reference {p.reference} exceeds the {len(ref.labels)} train points")
        chosen = select_points(ref.labels, points=p.reference, seed=0)
        return {
            "reference_indices": [int(i) for i in chosen],
            "variants": _variants(self.params),
            "families": _families(self.params),
            "layout": [list(t) for t in _layout(self.params)],
        }

    def _reference(self, model, context):
        from leafscope.applications import MahalanobisDetector
        from leafscope.models.features import penultimate_features

        x, y = context.data("reference").take(context.meta["reference_indices"])
        x = x.to(context.device)
        feats = penultimate_features(model, x).features
        maha = MahalanobisDetector(model).fit(x, y.to(context.device))
        return feats, maha

    def _scores(self, model, x, feats_ref, maha) -> np.ndarray:
        from leafscope.applications.adversarial import lid_scores, spectral_scores
        from leafscope.models.features import penultimate_features

        p: AdversarialParams = self.params
        spectral = spectral_scores(
            model, x, dtype=DTYPES[p.dtype], turning_step=p.turning_step,
            leaf_curvature=p.leaf_curvature,
        )  # fmt: skip
        feats = penultimate_features(model, x.float()).features
        lid = lid_scores(feats, feats_ref, p.lid_k)
        columns = []
        for variant in _variants(p):
            if variant in spectral:
                columns.append(spectral[variant])
            elif variant.startswith("lid_"):
                columns.append(lid[:, list(p.lid_k).index(int(variant[4:]))])
            else:
                columns.append(-np.asarray(maha.score_samples(x.float()), dtype=np.float64))
        return np.stack(columns, axis=1)

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.applications.attacks import attack

        p: AdversarialParams = self.params
        model = context.model()
        feats_ref, maha = self._reference(model, context)
        parts = []
        for block, indices, x, y in context.point_batches(positions, p.batch_size):
            x = x.to(context.device)
            with torch.no_grad():
                clean_pred = model(x).argmax(dim=1).cpu()
            clean = self._scores(model, x, feats_ref, maha)
            adv, fooled, cache = [], [], {}
            for name, seed in _layout(p):
                if name != "pgd" and name in cache:
                    outcome = cache[name]
                else:
                    outcome = attack(
                        name, model, x, p.budget, dtype=DTYPES[p.dtype], steps=p.pgd_steps,
                        seeds=[seed * SEED_STRIDE + i for i in indices],
                    )  # fmt: skip
                    cache[name] = outcome
                xa = outcome.x_adv.to(x.dtype)
                adv.append(self._scores(model, xa, feats_ref, maha))
                fooled.append(outcome.fooled.cpu().numpy().astype(np.float64))
            parts.append(
                {
                    "unit": np.asarray(block, dtype=np.int64),
                    "index": np.asarray(indices, dtype=np.int64),
                    "label": y.numpy().astype(np.int64),
                    "clean_predicted": clean_pred.numpy().astype(np.int64),
                    "correct": (clean_pred == y).numpy(),
                    "clean_scores": clean,
                    "adversarial_scores": np.concatenate(adv, axis=1),
                    "fooled": np.stack(fooled, axis=1),
                }
            )
        return concat_rows(parts)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.applications.adversarial import tuned_auroc

        p: AdversarialParams = self.params
        variants = list(context.meta.get("variants") or _variants(p))
        families = dict(context.meta.get("families") or _families(p))
        layout = [tuple(t) for t in (context.meta.get("layout") or _layout(p))]
        v = len(variants)
        correct = np.asarray(rows["correct"], dtype=bool)
        clean_all = np.asarray(rows["clean_scores"], dtype=np.float64)
        adv_all = np.asarray(rows["adversarial_scores"], dtype=np.float64)
        fooled_all = np.asarray(rows["fooled"]) > 0.5
        clean = {name: clean_all[correct, j] for j, name in enumerate(variants)}

        def examples(attack_name: str, seed: int) -> dict[str, np.ndarray]:
            col = layout.index((attack_name, seed))
            keep = correct & fooled_all[:, col]
            block = adv_all[:, col * v : (col + 1) * v]
            return {name: block[keep, j] for j, name in enumerate(variants)}

        results: dict[str, dict[str, list]] = {}
        counts: dict[str, list[int]] = {}
        for evaluated in p.attacks:
            counts[evaluated] = []
            for seed in range(p.seeds):
                target = examples(evaluated, seed)
                n_pos = len(next(iter(target.values())))
                counts[evaluated].append(n_pos)
                tune: dict[str, list] = {name: [] for name in variants}
                for other in p.attacks:
                    if other != evaluated:
                        for name, values in examples(other, seed).items():
                            tune[name].append(values)
                tuned = {name: np.concatenate(vals) for name, vals in tune.items()}
                if n_pos == 0 or len(next(iter(tuned.values()))) == 0 or not correct.any():
                    continue
                for score in tuned_auroc(clean, tuned, target, families):
                    results.setdefault(evaluated, {}).setdefault(score.detector, []).append(score)
        table = []
        for evaluated, by_detector in results.items():
            for detector, scores in by_detector.items():
                values = np.array([s.auroc for s in scores])
                table.append(
                    {
                        "attack": evaluated,
                        "detector": detector,
                        "auroc": float(values.mean()),
                        "std": float(values.std()),
                        "per_seed": [float(a) for a in values],
                        "variants": [s.variant for s in scores],
                        "signs": [s.sign for s in scores],
                        "tune_auroc": [s.tune_auroc for s in scores],
                    }
                )
        return {
            "points": int(len(correct)),
            "clean_correct": int(correct.sum()),
            "budget": float(p.budget),
            "successful_attacks": counts,
            "detection": table,
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [
            f"points={summary['points']} correct={summary['clean_correct']} "
            f"budget={summary['budget']:g} successful attacks per seed: "
            + "; ".join(f"{a}={c}" for a, c in summary["successful_attacks"].items())
        ]
        for row in summary["detection"]:
            lines.append(
                f"{row['attack']:>5} {row['detector']:>14} AUROC={row['auroc']:.4f} "
                f"(std {row['std']:.4f}; tuned on the other attacks: {row['variants'][0]}, "
                f"sign {row['signs'][0]:+d})"
            )
        return lines
