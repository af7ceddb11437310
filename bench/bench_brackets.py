"""Lie brackets of D_x = span{∇x p_a}: forward-over-reverse HVPs against full n×n Hessians.

    PYTHONPATH=. python bench/bench_brackets.py --model cnn --points 20 --full-points 1 \
        [--device cuda] [--json OUT]

The HVP route (:func:`leafscope.foliation.lie_brackets`) costs C jvps of the C-row Jacobian per
point; the full route builds the C Hessians (C × n × n, ``jacfwd(jacrev(p))``: n jvps of the
Jacobian) and multiplies. Both in float64. The full route runs on fewer points (it is ~n/C
times slower); the brackets are compared on those points.
"""

from __future__ import annotations

import argparse

import torch
from benchdevice import add_device_flag, describe, parse_device, timed
from torch.func import jacfwd, jacrev

from leafscope.foliation import involutivity, lie_brackets
from leafscope.foliation.brackets import _brackets_from_t
from leafscope.io import write_json
from leafscope.models import build_model


def full_hessian_brackets(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Brackets ``(N, C(C-1)/2, n)`` from dense Hessians, one point at a time."""
    shape = tuple(x.shape[1:])
    out = []
    for xi in x.reshape(x.shape[0], -1):

        def prob(z: torch.Tensor) -> torch.Tensor:
            return torch.softmax(model(z.reshape(1, *shape)), dim=1)[0]

        fields = jacrev(prob)(xi)  # (C, n)
        hess = jacfwd(jacrev(prob))(xi)  # (C, n, n): hess[b] = DX_b
        t = torch.einsum("bij,aj->abi", hess, fields)  # t[a, b] = DX_b · X_a
        out.append(_brackets_from_t(t).detach())
    return torch.stack(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="cnn", help="cnn (the paper's) or lenet")
    p.add_argument("--activation", default="gelu")
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--full-points", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    p.add_argument("--json", default=None, help="write the numbers here")
    add_device_flag(p)
    args = p.parse_args()
    device = parse_device(p, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(device))
    torch.manual_seed(0)
    model = build_model(args.model, activation=args.activation).double().eval().to(device)
    x = torch.rand(args.points, 1, 28, 28, dtype=torch.float64).to(device)
    _, cold_s = timed(lambda: involutivity(model, x), device)
    res, hvp_s = timed(lambda: involutivity(model, x), device)
    print(f"HVP route, first call (includes torch.func tracing warm-up): {cold_s:.2f} s")
    print(
        f"HVP route: {args.points} points in {hvp_s:.2f} s ({hvp_s / args.points:.3f} s/point), "
        f"mean dim D {res.mean_dim_distribution:.2f}, with brackets "
        f"{res.mean_dim_with_brackets:.2f}"
    )
    xf = x[: args.full_points]
    _, hvp = lie_brackets(model, xf)
    full, full_s = timed(lambda: full_hessian_brackets(model, xf), device)
    err = float((full - hvp).abs().max() / hvp.abs().max())
    per_full, per_hvp = full_s / args.full_points, hvp_s / args.points
    print(
        f"full-Hessian route: {args.full_points} points in {full_s:.2f} s ({per_full:.3f} s/point, "
        f"{per_full / per_hvp:.0f}x the HVP route); max relative difference {err:.2e}"
    )
    if args.json:
        write_json(
            args.json,
            {
                "device": str(device), "model": args.model, "points": args.points,
                "hvp_s_per_point": per_hvp, "hvp_first_call_s": cold_s,
                "full_s_per_point": per_full, "full_over_hvp": per_full / per_hvp,
                "max_rel_diff": err, "mean_dim": res.mean_dim_distribution,
                "mean_dim_with_brackets": res.mean_dim_with_brackets,
            },
        )  # fmt: skip


if __name__ == "__main__":
    main()
