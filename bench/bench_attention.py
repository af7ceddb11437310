"""Benchmark: the input Jacobian of attention models, by route.

``torch.func.vmap`` has no batching rule for the backward of the fused scaled-dot-product
attention kernels (on the CPU ``aten::_scaled_dot_product_flash_attention_for_cpu_backward``;
on CUDA the flash / memory-efficient kernels): vmap falls back to a slow per-slice loop and warns
("There is a performance drop because we have not yet implemented the batching rule"). Routes
timed for the full C×n Jacobian of every point (the work of ``DataInformation``):

* ``vmap-fused``: ``vmap(jacrev)`` over points with the default SDPA backend (the fallback);
* ``vmap-math``: the same inside ``sdpa_kernel(SDPBackend.MATH)`` (attention as matmul + softmax,
  which vmap batches);
* ``loop-fused`` / ``loop-math``: one point at a time, ``jacrev`` (vmap over the C classes);
* ``loop-grad``: one point and one class at a time, plain ``torch.autograd.grad`` (no vmap at
  all: the fused backward runs natively, C backward passes per point);
* ``leafscope``: ``leafscope.information.input_jacobian`` (the route it takes).

Models: Hugging Face ViT and BERT classifiers built from configs (random weights; SDPA attention
as transformers uses by default), float32 and float64. Every route is compared with
``loop-grad`` (max abs difference, printed): all are exact (no approximation), so they agree to
rounding.

Usage: python bench/bench_attention.py [--points 4] [--classes 10,100] [--dtypes float32]
       [--device cpu] [--repeats 2] [--quick] [--cpu-time]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings

import torch
from benchdevice import add_device_flag, describe, parse_device, timed
from torch.func import jacrev, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from leafscope.information import input_jacobian

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def vit(classes: int, quick: bool, size: int = 64) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers import ViTConfig, ViTForImageClassification

    size, hidden, layers = (32, 64, 2) if quick else (size, 192, 4)
    cfg = ViTConfig(
        image_size=size, patch_size=8, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=3 if hidden % 3 == 0 else 2, intermediate_size=4 * hidden,
        num_labels=classes,
    )  # fmt: skip
    return _logits(ViTForImageClassification(cfg).eval(), "pixel_values"), (3, size, size)


def bert(classes: int, quick: bool, length: int = 64) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers import BertConfig, BertForSequenceClassification

    length, hidden, layers = (16, 64, 2) if quick else (length, 128, 4)
    cfg = BertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=4 * hidden, num_labels=classes, max_position_embeddings=max(128, length),
    )  # fmt: skip
    return _logits(BertForSequenceClassification(cfg).eval(), "inputs_embeds"), (length, hidden)


class _logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**{self.key: x}).logits


def _single(model):
    return lambda xi: model(xi[None])[0]


def route(name: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    math = sdpa_kernel(SDPBackend.MATH) if name.endswith("math") else contextlib.nullcontext()
    with math:
        if name.startswith("vmap"):
            return vmap(jacrev(_single(model)))(x).flatten(2)
        if name in ("loop-fused", "loop-math"):
            return torch.stack([jacrev(_single(model))(xi) for xi in x]).flatten(2)
    if name == "loop-grad":
        rows = []
        for xi in x:
            xi = xi[None].clone().requires_grad_(True)
            out = model(xi)[0]
            grads = [
                torch.autograd.grad(out[c], xi, retain_graph=c < out.numel() - 1)[0]
                for c in range(out.numel())
            ]
            rows.append(torch.stack(grads).flatten(1))
        return torch.stack(rows)
    if name == "leafscope":
        return input_jacobian(model, x)[1]
    raise ValueError(name)


ROUTES = ("vmap-fused", "vmap-math", "loop-fused", "loop-math", "loop-grad", "leafscope")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--classes", default="10,100")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--models", default="vit,bert")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--quick", action="store_true", help="small models (a smoke test)")
    parser.add_argument("--image-size", type=int, default=64, help="ViT input size (patch 8)")
    parser.add_argument("--tokens", type=int, default=64, help="BERT tokens per text")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="one torch thread and process CPU time instead of wall time (steadier on a "
        "shared machine; CPU only)",
    )
    add_device_flag(parser)
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    if args.cpu_time:
        if device.type != "cpu":
            parser.error("--cpu-time measures the CPU: use --device cpu")
        torch.set_num_threads(1)

    def measure(fn):
        if not args.cpu_time:
            return timed(fn, device)
        start = time.process_time()
        out = fn()
        return out, time.process_time() - start

    print(describe(device) + (", process CPU time" if args.cpu_time else ", wall time"))
    warnings.simplefilter("ignore", UserWarning)  # the fallback warns on every call
    builders = {
        "vit": lambda c, q: vit(c, q, args.image_size),
        "bert": lambda c, q: bert(c, q, args.tokens),
    }
    header = f"{'model':6} {'dtype':8} {'C':>5} " + " ".join(f"{r:>11}" for r in ROUTES)
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for name in args.models.split(","):
            for classes in (int(c) for c in args.classes.split(",")):
                torch.manual_seed(0)
                model, shape = builders[name](classes, args.quick)
                model = model.to(device=device, dtype=dtype)
                for p in model.parameters():
                    p.requires_grad_(False)
                x = torch.rand(args.points, *shape, device=device, dtype=dtype)
                times = dict.fromkeys(ROUTES, float("inf"))
                jacs = {}
                for _ in range(args.repeats):  # round robin: load changes hit every route
                    for r in ROUTES:
                        jacs[r], seconds = measure(lambda r=r, m=model, x=x: route(r, m, x))
                        times[r] = min(times[r], seconds)
                ref = jacs["loop-grad"]
                scale = float(ref.abs().max())
                print(header)
                print(
                    f"{name:6} {dtype_name:8} {classes:5d} "
                    + " ".join(f"{times[r] / args.points:9.4f}s" for r in ROUTES)
                    + "  (s/point)"
                )
                print(
                    f"{'':21}"
                    + " ".join(f"{times['vmap-fused'] / times[r]:10.2f}x" for r in ROUTES)
                    + "  (speed-up over vmap-fused)"
                )
                diffs = {r: float((jacs[r] - ref).abs().max()) / scale for r in ROUTES}
                print(
                    f"{'':21}"
                    + " ".join(f"{diffs[r]:11.1e}" for r in ROUTES)
                    + "  (max |J - J_loop-grad| / max |J|)"
                )


if __name__ == "__main__":
    main()
