"""``explore``: a static page to see, point by point, the directions a classifier notices.

At each selected point x the task computes G(x) = AᵀA through the thin SVD of its factor
A = U S Vᵀ (:class:`leafscope.information.DataInformation`): the C-1 nonzero eigenvalues, the
trace, the rank and λ1, and the ``directions`` top eigen-directions (rows of Vᵀ, unit length in
input units). Each eigen-direction is signed so that walking along +v raises the probability of
the predicted class (the sign of ``U[predicted, j]``). ``kernel_directions`` random directions
of ker G (seeded by ``seed`` and the point's data index, so independent of the shards) walk
along what the model ignores, for contrast.

Along every direction v the task takes ``2 * steps + 1`` positions x + t·v, t evenly spaced in
[-radius, radius] (L2 length in input units, pixels in [0, 1]). Each image is kept in the data
range and rounded to 8 bits (clip to [0, 1], ``round(255 x) / 255``) *before* it is scored, so
the class probabilities stored beside it are the model's on exactly the image the page shows
(stored as an 8-bit PNG, lossless). Vectors are neither clipped nor rounded: they are stored as
their float32 values. The page does no inference.

Rows: one per point, with the spectrum columns and a JSON text column ``view`` holding the
point's PNGs (base64), the directions (signed colour maps), the walks and their probabilities.
With a result folder (``--out DIR``) the explorer is written as a static page: ``DIR/index.html``
(the entry, at the top of the folder) and its scripts, style and data under
``DIR/_files/explorer/`` (relative links only: no server, no network; it opens from ``file://``
and keeps working when ``DIR`` is copied elsewhere). Because of that ``index.html``, read the
rows of an explore folder with ``leafscope merge`` or the shard files
(``pd.read_parquet(sorted(glob("DIR/shard-*.parquet")))``), not the folder itself.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, concat_rows, param, register_task

__all__ = [
    "ExploreParams",
    "ExploreTask",
    "png_base64",
    "round_to_8bit",
    "signed_map",
    "walk_positions",
]

LOG_FLOOR = 1e-23
PROB_DECIMALS = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExploreParams(Params):
    """Parameters of :class:`ExploreTask`.

    Attributes:
        directions: top eigen-directions of G shown per point (at most C-1 are used).
        kernel_directions: random unit directions of ker G per point (the contrast).
        radius: the walks go from -radius to +radius along each unit direction (L2 length in
            input units: pixels in [0, 1]; an MNIST digit has norm about 9).
        steps: positions on each side of the point (each walk has ``2 * steps + 1`` images).
        seed: seed of the kernel directions (combined with each point's data index).
        dtype: compute dtype of G and its eigenvectors.
        batch_size: points per vectorised batch.
        rtol: rank tolerance relative to the largest eigenvalue (also bounds ker G).
    """

    directions: int = param(3, help="top eigen-directions of G shown per point")
    kernel_directions: int = param(1, help="random directions of ker G per point, for contrast")
    radius: float = param(4.0, help="walk from -RADIUS to +RADIUS along each unit direction "
                          "(L2, input units)")  # fmt: skip
    steps: int = param(4, help="walk positions on each side of the point")
    seed: int = param(0, help="seed of the kernel directions")
    dtype: str = param("float64", help="compute dtype of G", choices=tuple(DTYPES))
    batch_size: int = param(16, help="points per vectorised batch")
    rtol: float | None = param(None, help="rank tolerance relative to the largest eigenvalue")

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"dtype {self.dtype!r} is unknown: use one of {', '.join(DTYPES)}")
        for name in ("directions", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.kernel_directions < 0:
            raise InputError(f"kernel_directions must be >= 0 (got {self.kernel_directions})")
        if not (self.radius > 0 and np.isfinite(self.radius)):
            raise InputError(f"radius must be a finite number > 0 (got {self.radius})")
        if self.rtol is not None and self.rtol < 0:
            raise InputError(f"rtol must be >= 0 (got {self.rtol})")


def walk_positions(radius: float, steps: int) -> np.ndarray:
    """The ``2 * steps + 1`` step lengths t of a walk, evenly spaced in [-radius, radius]."""
    return np.linspace(-radius, radius, 2 * steps + 1)


def round_to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Images kept in [0, 1] and rounded to the nearest of the 256 levels k/255: what an 8-bit
    PNG holds, hence what the page shows (and what is scored)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def png_base64(image: np.ndarray | torch.Tensor) -> str:
    """An image ``(C, H, W)`` in [0, 1] (exactly 8-bit valued after :func:`round_to_8bit`) as a
    base64 PNG: grey for one channel, RGB for three, the channels side by side in grey
    otherwise. Decoding it gives back ``round(255 x)`` exactly."""
    x = torch.as_tensor(image).detach().cpu().double()
    q = np.round(x.clamp(0, 1).numpy() * 255.0).astype(np.uint8)
    if q.shape[0] == 1:
        pixels = q[0]
    elif q.shape[0] == 3:
        pixels = q.transpose(1, 2, 0)
    else:
        pixels = np.concatenate(list(q), axis=1)
    return base64.b64encode(_png(pixels)).decode("ascii")


#: Levels of the signed colour map on each side of 0 (a palette PNG of 2 * LEVELS + 1 colours).
MAP_LEVELS = 64


def _map_palette() -> list[int]:
    colours = []
    for s in np.linspace(-1.0, 1.0, 2 * MAP_LEVELS + 1):
        pos, neg = max(s, 0.0), max(-s, 0.0)
        colours += [round(255 * (1 - neg)), round(255 * (1 - pos - neg)), round(255 * (1 - pos))]
    return colours


def signed_map(direction: np.ndarray | torch.Tensor) -> str:
    """A direction ``(C, H, W)`` as a base64 palette PNG in a signed colour map: white at 0, red
    where the direction brightens a pixel, blue where it darkens it, scaled by max |v|
    (``MAP_LEVELS`` levels a side); one panel per channel (side by side, one white pixel apart)
    for more than one channel."""
    from PIL import Image

    v = torch.as_tensor(direction).detach().cpu().double().numpy()
    scale = float(np.abs(v).max()) or 1.0
    q = np.round((np.clip(v / scale, -1.0, 1.0) + 1.0) * MAP_LEVELS).astype(np.uint8)
    panels = [q[0]]
    for channel in q[1:]:
        panels += [np.full((q.shape[1], 1), MAP_LEVELS, dtype=np.uint8), channel]
    indices = np.ascontiguousarray(np.concatenate(panels, axis=1))
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    image.putpalette(_map_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _float32_list(values: np.ndarray | torch.Tensor) -> list[float]:
    """float32 values as JSON floats that read back to the same float32 (shortest repr)."""
    array = np.asarray(torch.as_tensor(values).detach().cpu().float().numpy()).reshape(-1)
    return [float(np.format_float_positional(v, unique=True, trim="-")) for v in array]


def _kernel_noise(seed: int, index: int, dim: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(index)]).standard_normal((1, dim))


@register_task
class ExploreTask(Task):
    """The explorer page: per point the top eigen-directions of G, a kernel direction, the walks
    along them with the model's probabilities on each shown image."""

    name = "explore"
    Params = ExploreParams
    default_points = 24
    summary = "a static page to walk along the directions the model notices and ignores"
    description = (
        "Per point: the spectrum of G (trace, rank, lambda1), its top eigen-directions "
        "(--directions) and random kernel directions (--kernel-directions), and walks from "
        "-RADIUS to +RADIUS along each with the model's class probabilities on each shown "
        "image (kept in [0, 1] and rounded to 8 bits before scoring). With --out DIR: "
        "DIR/index.html, a static page (no server, no network; assets under "
        "DIR/_files/explorer/) with a gallery sortable and filterable by trace, rank, "
        "lambda1, predicted class and correctness, the directions as images and a slider "
        "along the walks."
    )
    columns = (
        "unit",
        "index",
        "label",
        "predicted",
        "max_probability",
        "eigenvalues",
        "log10_eigenvalues",
        "trace",
        "log10_trace",
        "rank",
        "lambda1",
        "leaf_change",
        "kernel_change",
        "view",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        num_classes = context.num_classes()
        names = data.class_names
        if not names or len(names) != num_classes:
            names = [str(c) for c in range(num_classes)]
        p: ExploreParams = self.params
        shape = [int(s) for s in data.input_shape]
        if data.is_image:
            kind = "grey" if shape[0] == 1 else "rgb" if shape[0] == 3 else "channels"
        else:
            kind = "vector"
        return {
            "num_classes": num_classes,
            "class_names": [str(n) for n in names],
            "input_shape": shape,
            "kind": kind,
            "data": f"{Path(data.name).name} ({data.split})"
            if data.split
            else Path(data.name).name,
            "directions": min(p.directions, num_classes - 1),
            "t": [round(float(t), 6) for t in walk_positions(p.radius, p.steps)],
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        model = context.model()
        parts = [
            self._rows(model, x, y, block, indices, context)
            for block, indices, x, y in context.point_batches(positions, self.params.batch_size)
        ]
        return concat_rows(parts)

    def _rows(self, model, x, y, block, indices, context: Context) -> dict[str, np.ndarray]:
        from leafscope.applications.predict import predict_logits
        from leafscope.information import DataInformation

        p: ExploreParams = self.params
        meta = context.meta
        image = meta["kind"] != "vector"
        n, dim = x.shape[0], int(np.prod(x.shape[1:]))
        G = DataInformation(model, x.to(context.device), dtype=DTYPES[p.dtype])
        u, s, vh = (t.detach().cpu() for t in G.svd())
        c = G.num_classes
        eigenvalues = (s[:, : c - 1] ** 2).double()
        trace = G.trace().detach().cpu().double()
        rank = G.rank(p.rtol).rank.cpu()
        probs = G.probs.detach().cpu().double()
        predicted = probs.argmax(dim=1)

        k = int(meta["directions"])
        leaf = vh[:, :k].double()  # (n, k, d) unit rows
        sign = torch.sign(u[torch.arange(n), predicted][:, :k].double())  # (n, k)
        leaf = leaf * torch.where(sign == 0, torch.ones_like(sign), sign)[..., None]
        kernel = []
        for j in range(p.kernel_directions):
            noise = torch.from_numpy(
                np.concatenate([_kernel_noise(p.seed + j, i, dim) for i in indices])
            ).to(G.factor.device)
            v = G.project_kernel(noise, p.rtol).detach().cpu().double()
            norm = v.norm(dim=1, keepdim=True)
            kernel.append(torch.where(norm > 1e-8, v / norm.clamp_min(1e-300), 0 * v))
        dirs = torch.cat([leaf, *(v[:, None] for v in kernel)], dim=1)  # (n, m, d)
        m = dirs.shape[1]
        gv = torch.stack(
            [G.quadratic(dirs[:, j].to(G.factor)).detach().cpu().double() for j in range(m)],
            dim=1,
        )  # (n, m) = v'G v: the eigenvalue for leaf directions, ~0 for kernel ones

        t = torch.tensor(meta["t"], dtype=torch.float64)
        x0 = x.detach().cpu().double().reshape(n, 1, 1, dim)
        frames = x0 + t.reshape(1, 1, -1, 1) * dirs.reshape(n, m, 1, dim)  # (n, m, T, d)
        frames = frames.reshape(-1, *x.shape[1:])
        frames = round_to_8bit(frames) if image else frames.float().double()
        scored = frames.to(x.dtype)
        walk_probs = torch.softmax(predict_logits(model, scored).double(), dim=1)
        walk_probs = walk_probs.reshape(n, m, len(t), c)
        center = len(t) // 2
        change = 0.5 * (walk_probs - walk_probs[:, :, center : center + 1]).abs().sum(-1)
        change = change.max(dim=2).values  # (n, m) largest total-variation move from t = 0
        frames = frames.reshape(n, m, len(t), *x.shape[1:])

        views = []
        for i in range(n):
            view: dict[str, Any] = {"directions": []}
            if image:
                view["image"] = png_base64(round_to_8bit(x[i].double()))
            else:
                view["values"] = _float32_list(x[i])
            for j in range(m):
                kind = "leaf" if j < k else "kernel"
                direction = dirs[i, j].reshape(x.shape[1:])
                if kind == "kernel" and not bool(direction.abs().max() > 0):
                    continue  # ker G is (numerically) empty at this point
                entry: dict[str, Any] = {
                    "kind": kind,
                    "order": j + 1 if kind == "leaf" else j - k + 1,
                    "eigenvalue": float(eigenvalues[i, j]) if kind == "leaf" else None,
                    "vgv": float(gv[i, j]),
                    "change": round(float(change[i, j]), PROB_DECIMALS),
                    "probs": np.round(walk_probs[i, j].numpy(), PROB_DECIMALS).tolist(),
                }
                if image:
                    entry["map"] = signed_map(direction)
                    entry["frames"] = [png_base64(f) for f in frames[i, j]]
                else:
                    entry["values"] = [round(float(v), 5) for v in direction.reshape(-1)]
                    entry["frames"] = [_float32_list(f) for f in frames[i, j]]
                view["directions"].append(entry)
            views.append(json.dumps(view, separators=(",", ":")))

        kernel_change = change[:, k:].max(dim=1).values if m > k else torch.full((n,), np.nan)
        return {
            "unit": np.asarray(block, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
            "label": y.numpy().astype(np.int64),
            "predicted": predicted.numpy().astype(np.int64),
            "max_probability": probs.max(dim=1).values.numpy(),
            "eigenvalues": eigenvalues.numpy(),
            "log10_eigenvalues": eigenvalues.clamp_min(LOG_FLOOR).log10().numpy(),
            "trace": trace.numpy(),
            "log10_trace": trace.clamp_min(LOG_FLOOR).log10().numpy(),
            "rank": rank.numpy().astype(np.int64),
            "lambda1": eigenvalues[:, 0].numpy(),
            "leaf_change": change[:, 0].numpy(),
            "kernel_change": kernel_change.double().numpy(),
            "view": np.asarray(views, dtype=object),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        p: ExploreParams = self.params
        label = np.asarray(rows["label"])
        labelled = label >= 0
        correct = np.asarray(rows["predicted"])[labelled] == label[labelled]
        kernel = np.asarray(rows["kernel_change"], dtype=np.float64)
        kernel = kernel[np.isfinite(kernel)]
        return {
            "points": int(len(label)),
            "accuracy": float(correct.mean()) if correct.size else None,
            "median_log10_trace": float(np.median(rows["log10_trace"])),
            "median_log10_lambda1": float(
                np.median(np.log10(np.maximum(np.asarray(rows["lambda1"]), LOG_FLOOR)))
            ),
            "median_rank": float(np.median(rows["rank"])),
            "radius": p.radius,
            "median_leaf_change": float(np.median(rows["leaf_change"])),
            "median_kernel_change": float(np.median(kernel)) if kernel.size else None,
            "page": "index.html",
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        kernel = summary.get("median_kernel_change")
        contrast = f"; along a kernel direction {kernel:.3f}" if isinstance(kernel, float) else ""
        accuracy = summary.get("accuracy")
        shown = f", accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
        return [
            f"{summary['points']} points{shown}: median log10 trace "
            f"{summary['median_log10_trace']:.3f}, median log10 lambda1 "
            f"{summary['median_log10_lambda1']:.3f}, median rank {summary['median_rank']:g}",
            f"walking +-{summary['radius']:g} along the top eigen-direction moves the class "
            f"probabilities by {summary['median_leaf_change']:.3f} (median largest total "
            f"variation){contrast}",
            "the explorer page: index.html at the top of the results folder (written with --out)",
        ]

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        keys = ("index", "label", "predicted", "trace", "rank", "lambda1", "leaf_change",
                "kernel_change")  # fmt: skip
        return {
            "points": [{k: _scalar(rows[k][i]) for k in keys} for i in range(len(rows["unit"]))]
        }

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        from leafscope.tasks.explore_page import write_explorer

        p: ExploreParams = self.params
        points = []
        for i in range(len(rows["unit"])):
            view = json.loads(str(rows["view"][i]))
            points.append(
                {
                    "index": int(rows["index"][i]),
                    "label": int(rows["label"][i]),
                    "predicted": int(rows["predicted"][i]),
                    "max_probability": float(rows["max_probability"][i]),
                    "trace": float(rows["trace"][i]),
                    "log10_trace": float(rows["log10_trace"][i]),
                    "rank": int(rows["rank"][i]),
                    "lambda1": float(rows["lambda1"][i]),
                    "log10_eigenvalues": np.asarray(rows["log10_eigenvalues"][i]).tolist(),
                    "leaf_change": float(rows["leaf_change"][i]),
                    "kernel_change": _scalar(rows["kernel_change"][i]),
                    "view": view,
                }
            )
        meta = {
            **{
                k: context.meta[k]
                for k in ("num_classes", "class_names", "input_shape", "kind", "data", "t")
            },  # fmt: skip
            "radius": p.radius,
            "params": p.to_json(),
            "summary": dict(summary),
        }
        return write_explorer(Path(folder).parent, points=points, meta=meta)


def _scalar(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
