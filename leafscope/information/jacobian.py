"""Batched per-sample Jacobians of a classifier's logits, via :mod:`torch.func`.

All functions evaluate the model in eval mode (restoring the caller's mode afterwards) unless
asked not to (MC dropout), and validate what they are given: inputs must be finite, the output
must be logits ``(N, C)`` with ``C >= 2``.

Attention. ``vmap`` has no batching rule for the backward of the fused scaled-dot-product
attention kernels (CPU flash attention; CUDA flash / memory-efficient): it falls back to a loop
over the batch and warns on every call. :func:`attention_route` picks the route of every
Jacobian product here: ``fused`` keeps the fused kernels (and silences the warning), ``math``
runs attention as matmul + softmax (``sdpa_kernel(SDPBackend.MATH)``), which vmap batches;
``auto`` (the default) is ``fused`` on the CPU and ``math`` on CUDA. Both are exact (the same
function, rounding aside). CPU, one thread (``python bench/bench_attention.py --cpu-time``):
the fallback costs little and ``math`` loses at long sequences (0.71x at 257 ViT tokens,
0.69x at 256 BERT tokens, 1.01-1.06x at 64-65 tokens), hence ``fused`` there; on CUDA the
fallback launches one kernel per point and class (not measured here: run the benchmark with
``--device cuda``). Forward-mode AD (``jvp``, used by the matrix-free top-k spectrum) does not
exist for the fused CPU kernel at all, so routes with jvps take ``math``.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from leafscope.errors import InputError, check_positive_int

__all__ = [
    "ATTENTION_ROUTES",
    "attention_route",
    "cast_model",
    "check_inputs",
    "probability_logits",
    "reference_model",
    "eval_mode",
    "input_jacobian",
    "logits_of",
    "parameter_jacobian",
]


#: Routes of scaled-dot-product attention inside Jacobian products (see the module docstring).
ATTENTION_ROUTES = ("auto", "fused", "math")
_FALLBACK_WARNING = "There is a performance drop because we have not yet implemented the batching"


@contextlib.contextmanager
def attention_route(
    route: str = "auto", device: torch.device | str | None = None, *, forward_ad: bool = False
):
    """Run the Jacobian products of the block with attention on ``route``.

    Args:
        route: ``auto`` (``math`` on CUDA or with ``forward_ad``, ``fused`` elsewhere),
            ``fused`` (the default SDPA kernels; vmap's fallback warning silenced) or ``math``
            (matmul + softmax).
        device: where the products run (for ``auto``).
        forward_ad: the block uses forward-mode AD (``jvp``, ``linearize``): the fused CPU
            kernel has none (``NotImplementedError``), so ``auto`` takes ``math``.
    """
    if route not in ATTENTION_ROUTES:
        raise InputError(f"unknown attention route {route!r}: use one of {ATTENTION_ROUTES}")
    if route == "auto":
        cuda = device is not None and torch.device(device).type == "cuda"
        route = "math" if cuda or forward_ad else "fused"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FALLBACK_WARNING)
        if route == "math":
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
            except ImportError:  # torch < 2.3: no backend choice
                yield
                return
            with sdpa_kernel(SDPBackend.MATH):
                yield
        else:
            yield


def check_inputs(x: Tensor, name: str = "inputs") -> None:
    """Raise :class:`InputError` unless ``x`` is a non-empty floating batch of finite values."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor (got {type(x).__name__})")
    if x.dim() < 2 or x.shape[0] == 0:
        raise InputError(
            f"{name} must be a batch of shape (N, ...) with N >= 1 (got shape {tuple(x.shape)}); "
            "add a batch dimension with x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise InputError(f"{name} must be floating point (got dtype {x.dtype}); use x.float()")
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise InputError(f"{name} contain NaN or inf at samples {bad}: clean or drop those samples")


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when its parameters already have ``dtype``, else a deep copy cast to it
    (the caller's model is never modified)."""
    if not dtype.is_floating_point:
        raise InputError(f"dtype must be floating point (got {dtype}); use torch.float64")
    ref = next(iter(model.parameters()), None)
    if ref is None or ref.dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def reference_model(
    model: nn.Module, compute_dtype: torch.dtype, given: nn.Module | None = None
) -> nn.Module | None:
    """The model whose logits give p when G is computed in ``compute_dtype``: None for float32
    / float64 (the compute pass gives p); for bfloat16 / float16 ``given``, else ``model`` cast
    to float32 (a copy unless it is float32 already). A logit rounded to bfloat16 (8 bits) is
    off by up to 2⁻⁹ of its size, and p_i = exp(z_i − z_max) turns that absolute error into a
    relative error of p: for logits near 20, 4% in every small p_i. One float32 forward per
    batch (next to C backward passes in low precision) removes it."""
    if compute_dtype not in (torch.bfloat16, torch.float16):
        return None
    return given if given is not None else cast_model(model, torch.float32)


def probability_logits(
    reference: nn.Module | None, x: Tensor, logits: Tensor, force_eval: bool = True
) -> Tensor:
    """Logits in the accumulation dtype for p: ``reference``'s on ``x`` in float32 (eval
    mode, no gradient) when there is one, else ``logits`` themselves. With ``force_eval=False``
    (MC dropout) the compute pass's own logits are kept, so p and J share the dropout mask."""
    if reference is None or not force_eval:
        return logits
    ref = next(iter(reference.parameters()), None)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    with torch.no_grad(), eval_mode(reference):
        out = logits_of(reference, x.to(dtype))
    return out.detach()


def _is_batchnorm(module: nn.Module) -> bool:
    # TorchScript modules are RecursiveScriptModule: recognise BatchNorm by its original name.
    if isinstance(module, torch.jit.ScriptModule):
        return "BatchNorm" in str(getattr(module, "original_name", ""))
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _check_batchnorm(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if _is_batchnorm(module) and module.training:
            raise InputError(
                f"BatchNorm layer {name!r} is in training mode: its output depends on the whole "
                "batch, so per-sample Jacobians are meaningless; call model.eval() first"
            )


@contextlib.contextmanager
def eval_mode(model: nn.Module, force: bool = True) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode (``force=False``: leave it as it is, but refuse
    BatchNorm in training mode); restore every submodule's flag afterwards."""
    flags = {module: module.training for module in model.modules()}
    if force:
        model.eval()
    try:
        _check_batchnorm(model)
        yield model
    finally:
        for module, flag in flags.items():
            module.training = flag


@contextlib.contextmanager
def constant_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Treat the parameters as constants while differentiating in the input; restore the
    ``requires_grad`` flags afterwards. With the flags set, a batched backward pass (``vmap``
    over vjp rows) also forms a weight gradient per row: the exact factor of a 1000-class
    ResNet-18 at 3×224×224 then ran out of 24 GB, against a 2.5 GB peak with constants."""
    # only leaves can change the flag (a TorchScript module may hold non-leaf parameters:
    # those keep it, which costs memory and time, not correctness)
    frozen = [p for p in model.parameters() if p.requires_grad and p.is_leaf]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in frozen:
            p.requires_grad_(True)


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    """Evaluate ``model`` on the batch ``x`` and check the result is logits ``(N, C)``, C >= 2."""
    out = model(x)
    if not isinstance(out, Tensor):
        raise InputError(
            f"the model must return a tensor of logits (N, C) (got {type(out).__name__}); "
            "wrap it so that forward returns the logits"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise InputError(
            f"the model must map a batch of N={x.shape[0]} inputs to logits of shape (N, C) "
            f"(got output shape {tuple(out.shape)}); flatten or wrap the model's output"
        )
    if out.shape[1] < 2:
        raise InputError(
            f"the model has C={out.shape[1]} output; information matrices need a classifier "
            "with C >= 2 logits (for a binary model output two logits [0, s])"
        )
    return out


def _single(model: nn.Module):
    """Per-sample logits, returned twice: the Jacobian's output and (as aux) the value, so that
    both come from one forward pass (the same dropout mask under MC dropout)."""

    def f(x: Tensor) -> tuple[Tensor, Tensor]:
        out = model(x.unsqueeze(0)).squeeze(0)
        return out, out

    return f


def input_jacobian(
    model: nn.Module,
    x: Tensor,
    *,
    chunk_size: int | None = None,
    class_chunk_size: int | None = None,
    force_eval: bool = True,
    attention: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Per-sample Jacobian of the logits with respect to the input.

    Args:
        model: classifier mapping a batch ``(N, *shape)`` to logits ``(N, C)``.
        x: inputs ``(N, *shape)``, finite floating point.
        chunk_size: samples per vectorised chunk (bounds memory; ``None`` = all at once).
        class_chunk_size: logits per vectorised backward pass (``jacrev``'s ``chunk_size``),
            one sample at a time (``chunk_size`` is then unused): bounds memory for many
            classes; ``None`` = all C rows of a chunk of samples at once.
        force_eval: evaluate in eval mode (default). ``False`` keeps the model's mode, e.g.
            MC dropout on a model in training mode: every sample then gets its own dropout mask
            (drawn from torch's global generator, so ``torch.manual_seed`` reproduces it), and
            its logits and Jacobian share that mask; BatchNorm in training mode is refused.
        attention: route of scaled-dot-product attention (:func:`attention_route`).

    Returns:
        ``(logits, jac)``: logits ``(N, C)`` and ``jac`` ``(N, C, n)`` with ``n = prod(shape)``.

    Examples:
        >>> model = nn.Linear(5, 3)
        >>> logits, jac = input_jacobian(model, torch.rand(4, 5))
        >>> jac.shape, bool(torch.allclose(jac[0], model.weight))  # J = W for a linear model
        (torch.Size([4, 3, 5]), True)
    """
    check_inputs(x)
    for name, value in (("chunk_size", chunk_size), ("class_chunk_size", class_chunk_size)):
        if value is not None:
            check_positive_int(value, name, " or None")
    with (
        eval_mode(model, force_eval),
        constant_parameters(model),
        attention_route(attention, x.device),
    ):
        with torch.no_grad():
            logits_of(model, x[:1])
        if class_chunk_size is not None:  # one sample at a time: vmap over samples would
            # batch every chunk of classes with all the samples' graphs at once
            rows = jacrev(_single(model), has_aux=True, chunk_size=class_chunk_size)
            parts = [rows(xi) for xi in x]
            jac = torch.stack([part[0] for part in parts])
            logits = torch.stack([part[1] for part in parts])
        else:
            jac_fn = vmap(
                jacrev(_single(model), has_aux=True),
                chunk_size=chunk_size,
                randomness="different",
            )
            jac, logits = jac_fn(x)
    return logits.detach(), jac.reshape(x.shape[0], logits.shape[1], -1).detach()


def parameter_jacobian(
    model: nn.Module,
    x: Tensor,
    *,
    parameters: list[str] | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor, list[str]]:
    """Per-sample Jacobian of the logits with respect to the parameters.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: inputs ``(N, *shape)``.
        parameters: names (as in ``model.named_parameters()``) to differentiate; default all
            that require grad.
        chunk_size: samples per vectorised chunk.

    Returns:
        ``(logits, jac, names)``: logits ``(N, C)``, ``jac`` ``(N, C, P)`` with the parameters
        flattened and concatenated in the order of ``names``.
    """
    check_inputs(x)
    all_params = dict(model.named_parameters())
    if parameters is None:
        names = [n for n, p in all_params.items() if p.requires_grad]
    else:
        unknown = [n for n in parameters if n not in all_params]
        if unknown:
            raise InputError(
                f"unknown parameter names {unknown}; valid names: {sorted(all_params)}"
            )
        names = list(parameters)
    if not names:
        raise InputError("the model has no trainable parameters to differentiate")
    chosen = {n: all_params[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    buffers = dict(model.named_buffers())

    def f(params: dict[str, Tensor], xi: Tensor) -> Tensor:
        state = {**frozen, **params, **buffers}
        return functional_call(model, state, (xi.unsqueeze(0),)).squeeze(0)

    with eval_mode(model), attention_route("auto", x.device):
        with torch.no_grad():
            logits = logits_of(model, x)
        jac = vmap(jacrev(f), in_dims=(None, 0), chunk_size=chunk_size)(chosen, x)
    flat = torch.cat([jac[n].reshape(x.shape[0], logits.shape[1], -1) for n in names], dim=2)
    return logits.detach(), flat.detach(), names
