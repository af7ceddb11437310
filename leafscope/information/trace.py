"""An unbiased estimate of tr G with one vector–Jacobian product per probe (Hutchinson).

``G = AᵀA`` with ``A = B(p) J`` (C×n, :mod:`leafscope.information.matrices`), so

    tr G = tr(A Aᵀ) = E_u ‖Aᵀ u‖²   for any random u ∈ R^C with E[u uᵀ] = I,

and ``Aᵀu = Jᵀ(Bᵀu)`` is one vjp (``Bᵀu = √p⊙u − p(√pᵀu)`` costs O(C)). With m probes the mean
of the m values ``‖Aᵀu_j‖²`` is unbiased; its standard error is the sample standard deviation
over √m. For Rademacher probes (±1, the default) the variance of one value is
``2 (‖K‖_F² − Σ_i K_ii²)`` with ``K = AAᵀ``: zero when K is diagonal, small when a few classes
hold the probability. Exact: ``DataInformation(...).trace()`` costs C backward passes; the
estimate costs m (``probes``), independent of C, which pays for C in the hundreds or more.
The probes live in class space (length C), so they are cheap to draw and to store; the forward
graph is built once per chunk of points and reused by every probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import vjp, vmap

from leafscope.dtypes import accumulation_dtype, check_compute_dtype
from leafscope.errors import InputError, check_positive_int
from leafscope.information.jacobian import (
    attention_route,
    cast_model,
    check_inputs,
    constant_parameters,
    eval_mode,
    logits_of,
    probability_logits,
    reference_model,
)

__all__ = ["PROBE_DISTRIBUTIONS", "TraceEstimate", "trace_estimate"]

PROBE_DISTRIBUTIONS = ("rademacher", "gaussian")


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimates of tr G at N points.

    Attributes:
        estimate: ``(N,)`` the mean of the probe values (unbiased for tr G).
        stderr: ``(N,)`` its standard error (sample std over √probes; inf for one probe).
        values: ``(N, probes)`` the probe values ``‖Aᵀu_j‖²``.
        probes: probes per point (each one vjp).
        probs: ``(N, C)`` class probabilities.
    """

    estimate: Tensor
    stderr: Tensor
    values: Tensor
    probes: int
    probs: Tensor

    @property
    def relative_stderr(self) -> Tensor:
        """``(N,)`` stderr / estimate."""
        return self.stderr / self.estimate.abs().clamp_min(torch.finfo(self.estimate.dtype).tiny)


def _probes(probes: int, classes: int, kind: str, seeds: list[int], dtype, device) -> Tensor:
    """``(probes, N, C)``: the probes of point i drawn from a CPU generator seeded with
    ``seeds[i]`` (the same for a point in any batch, chunk or device)."""
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        if kind == "rademacher":
            u = (2 * torch.randint(0, 2, (probes, classes), generator=gen) - 1).to(dtype)
        else:
            u = torch.randn((probes, classes), generator=gen, dtype=dtype)
        out.append(u)
    return torch.stack(out, dim=1).to(device)


def _point_seeds(seed: int, n: int) -> list[int]:
    import numpy as np

    return [int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]) for i in range(n)]


def trace_estimate(
    model: nn.Module,
    x: Tensor,
    *,
    probes: int = 64,
    seed: int = 0,
    distribution: str = "rademacher",
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    probe_chunk: int | None = 16,
    point_seeds: list[int] | None = None,
    force_eval: bool = True,
    attention: str = "auto",
    probs_model: nn.Module | None = None,
) -> TraceEstimate:
    """Unbiased estimate of ``tr G(x)`` at each point, with its standard error (see the
    module docstring).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``, samples independent.
        x: points ``(N, *shape)``.
        probes: probes per point, ``>= 2`` for a standard error (each costs one vjp).
        seed: seed of the probes (results are reproducible): point i's probes come from
            ``SeedSequence([seed, i])``.
        distribution: ``rademacher`` (±1, lower variance) or ``gaussian``.
        dtype: compute dtype of the forward and the vjps (the model is copied when it
            differs); the probes, ``Bᵀu`` and the norms are in its accumulation dtype.
        chunk_size: points per batch through the model (default all).
        probe_chunk: probes vectorised at once (bounds memory: each holds one input-sized
            gradient per point); None: all. The estimate does not depend on it.
        point_seeds: one seed per point instead of ``seed`` (e.g. from the points' data
            indices, so a point gets the same probes in any batch or shard).
        force_eval: evaluate in eval mode (default).
        attention: route of scaled-dot-product attention
            (:func:`~leafscope.information.jacobian.attention_route`).
        probs_model: in low precision, the float32 model whose logits give p (default: the
            model cast to float32).

    Returns:
        :class:`TraceEstimate` (float64 on x's device).

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> from leafscope.information import DataInformation
        >>> model, x = tiny_mlp(n_in=12, n_classes=4), torch.rand(3, 12)
        >>> est = trace_estimate(model, x, probes=2000, dtype=torch.float64)
        >>> exact = DataInformation(model, x, dtype=torch.float64).trace()
        >>> bool(((est.estimate - exact).abs() < 5 * est.stderr).all())
        True
    """
    check_positive_int(probes, "probes")
    if distribution not in PROBE_DISTRIBUTIONS:
        raise InputError(f"unknown probe distribution {distribution!r}: use rademacher or gaussian")
    for name, value in (("chunk_size", chunk_size), ("probe_chunk", probe_chunk)):
        if value is not None:
            check_positive_int(value, name, " or None")
    check_inputs(x)
    original, x_in = model, x
    if dtype is not None:
        check_compute_dtype(dtype)
        model, x = cast_model(model, dtype), x.to(dtype)
    reference = reference_model(original, x.dtype, probs_model)
    acc = accumulation_dtype(x.dtype)
    if point_seeds is None:
        point_seeds = _point_seeds(seed, x.shape[0])
    elif len(point_seeds) != x.shape[0]:
        raise InputError(f"point_seeds has {len(point_seeds)} seeds for {x.shape[0]} points")
    step = chunk_size or x.shape[0]
    width = probe_chunk or probes
    values, all_probs = [], []
    with (
        eval_mode(model, force_eval),
        constant_parameters(model),
        attention_route(attention, x.device),
    ):
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            logits, vjp_fn = vjp(lambda z: logits_of(model, z), chunk)
            for_p = probability_logits(
                reference, x_in[start : start + step], logits.detach(), force_eval
            )
            p = torch.softmax(for_p.to(acc), dim=1)
            sqrt_p = p.sqrt()
            parts = []
            seeds = point_seeds[start : start + step]
            every = _probes(probes, p.shape[1], distribution, seeds, acc, x.device)
            for first in range(0, probes, width):
                u = every[first : first + width]
                w = sqrt_p * u - p * (sqrt_p * u).sum(dim=-1, keepdim=True)  # Bᵀu, (m, N, C)
                grads = vmap(lambda c, f=vjp_fn: f(c)[0])(w.to(x.dtype))  # Aᵀu, (m, N, *shape)
                parts.append(grads.detach().to(acc).flatten(2).pow(2).sum(dim=2))
                del grads
            values.append(torch.cat(parts).T.double())  # (N_chunk, probes)
            all_probs.append(p.detach())
            del vjp_fn, logits
    samples = torch.cat(values)
    estimate = samples.mean(dim=1)
    if probes > 1:
        stderr = samples.std(dim=1, correction=1) / math.sqrt(probes)
    else:
        stderr = torch.full_like(estimate, math.inf)
    return TraceEstimate(estimate, stderr, samples, probes, torch.cat(all_probs))
