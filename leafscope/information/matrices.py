"""Data information matrix G(x, w) and per-sample Fisher matrix F(x, w), in factored form.

Both are batches of PSD matrices ``M_k = A_kᵀ A_k`` (one per sample k) with the factor

    A = B(p) J,   B(p) = diag(√p) − √p pᵀ,   so   BᵀB = diag(p) − p pᵀ = M(p),

where ``J`` is the Jacobian of the logits (w.r.t. the input for G, the parameters for F).
Row i of A is ``√p_i ∇ log p_i``, hence ``AᵀA = Σ_i p_i ∇log p_i ∇log p_iᵀ`` exactly.
``√pᵀ A = Σ_i p_i ∇ log p_i = 0``, so the rank is at most C − 1.

Nothing of size d×d is ever formed (``dense()`` excepted, on request): the spectrum comes
from the thin SVD of the C×d factor, ``O(C² d)`` per sample, which is also more accurate
than an eigendecomposition of ``AAᵀ`` (the condition number is not squared).

Precision. The model's forward and the Jacobian run in the compute dtype (``dtype``: float64,
float32, bfloat16 or float16); the factor is formed, stored and decomposed in its accumulation
dtype (:func:`leafscope.dtypes.accumulation_dtype`: float32 for the low-precision dtypes,
float64 for float64), so the C×C Gram of the factor, its eigenproblem (the thin SVD), traces
and norms never run in bfloat16 / float16 (in bfloat16 they lose the small eigenvalues first).
In low precision p comes from one float32 forward (``probs_model``, see
:func:`~leafscope.information.jacobian.reference_model`): rounded logits would put a relative
error of several percent into every small p_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from leafscope.dtypes import LOW_PRECISION, accumulation_dtype, check_compute_dtype
from leafscope.errors import InputError
from leafscope.information.jacobian import (
    cast_model,
    input_jacobian,
    parameter_jacobian,
    probability_logits,
    reference_model,
)

__all__ = ["DataInformation", "FisherInformation", "InformationMatrix", "RankInfo"]

DENSE_LIMIT_BYTES = 2 * 1024**3
#: Default rank tolerance of a low-precision factor, in units of its compute dtype's eps.
LOW_PRECISION_RTOL = 4.0


@dataclass(frozen=True)
class RankInfo:
    """Numerical rank of each matrix in a batch.

    Attributes:
        rank: ``(N,)`` number of eigenvalues above the tolerance.
        eigenvalues: ``(N, C-1)`` the C−1 largest eigenvalues (= singular values of the PSD
            matrix), descending.
        tolerance: ``(N,)`` the absolute eigenvalue threshold used for each sample.
    """

    rank: Tensor
    eigenvalues: Tensor
    tolerance: Tensor


class InformationMatrix:
    """A batch of N matrices ``A_kᵀ A_k`` (d×d, rank ≤ C−1) stored as factors ``A`` (N, C, d).

    Args:
        factor: ``(N, C, d)`` with rows ``√p_i ∇ log p_i``.
        probs: ``(N, C)`` class probabilities at the points.
        input_shape: shape of one point, used to reshape eigenvectors (default ``(d,)``).
        compute_dtype: the dtype the Jacobian was computed in (default: the factor's); the
            factor itself is in its accumulation dtype.
    """

    def __init__(
        self,
        factor: Tensor,
        probs: Tensor,
        input_shape: tuple[int, ...] | None = None,
        compute_dtype: torch.dtype | None = None,
    ):
        if factor.dim() != 3 or probs.shape != factor.shape[:2]:
            raise InputError(
                f"factor must be (N, C, d) and probs (N, C) (got {tuple(factor.shape)} and "
                f"{tuple(probs.shape)})"
            )
        self.factor = factor
        self.probs = probs
        self.input_shape = tuple(input_shape) if input_shape else (factor.shape[2],)
        self.compute_dtype = compute_dtype or factor.dtype
        self._svd: tuple[Tensor, Tensor, Tensor] | None = None

    # -- sizes --------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return self.factor.shape[0]

    @property
    def num_classes(self) -> int:
        return self.factor.shape[1]

    @property
    def dim(self) -> int:
        return self.factor.shape[2]

    @property
    def predicted(self) -> Tensor:
        """``(N,)`` predicted class at each point."""
        return self.probs.argmax(dim=1)

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index) -> InformationMatrix:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return type(self)._from_parts(self, self.factor[index], self.probs[index])

    @classmethod
    def _from_parts(cls, like: InformationMatrix, factor: Tensor, probs: Tensor):
        obj = cls.__new__(cls)
        InformationMatrix.__init__(obj, factor, probs, like.input_shape, like.compute_dtype)
        return obj

    # -- spectrum -----------------------------------------------------------------------
    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """Thin SVD of the factor: ``U`` (N, C, C), ``S`` (N, C) descending, ``Vh`` (N, C, d)."""
        if self._svd is None:
            self._svd = torch.linalg.svd(self.factor, full_matrices=False)
        return self._svd

    def eigenvalues(self) -> Tensor:
        """``(N, C-1)`` the C−1 possibly nonzero eigenvalues, descending (units: 1/input²)."""
        return self.svd()[1][:, : self.num_classes - 1] ** 2

    def eigh(self) -> tuple[Tensor, Tensor]:
        """Nonzero eigenpairs: eigenvalues ``(N, C-1)`` descending, eigenvectors ``(N, C-1, d)``
        (row i is the unit eigenvector of eigenvalue i; sign is arbitrary)."""
        _, s, vh = self.svd()
        k = self.num_classes - 1
        return s[:, :k] ** 2, vh[:, :k]

    def trace(self) -> Tensor:
        """``(N,)`` trace ``Σ_i p_i ‖∇ log p_i‖²`` (the squared Frobenius norm of the factor)."""
        return self.factor.pow(2).sum(dim=(1, 2))

    def rank(self, rtol: float | None = None) -> RankInfo:
        """Numerical rank: eigenvalues above ``tol = (rtol · σ_max)²`` where σ are the singular
        values of the factor; default ``rtol = max(C, d) · eps(dtype)`` (NumPy's rule), and
        for a factor from a bfloat16 / float16 Jacobian ``rtol = 4 · eps`` of that dtype: its
        rounding, not the float32 accumulation, limits which singular values are resolved (the
        measured error of every σ_i was at most 3.6 eps · σ_1 on a trained LeNet-5 and a tiny
        ViT, ``docs/foundation.md``)."""
        s = self.svd()[1][:, : self.num_classes - 1]
        if rtol is None:
            if self.compute_dtype in LOW_PRECISION.values():
                rtol = LOW_PRECISION_RTOL * torch.finfo(self.compute_dtype).eps
            else:
                rtol = max(self.num_classes, self.dim) * torch.finfo(s.dtype).eps
        if rtol < 0:
            raise InputError(f"rtol must be >= 0 (got {rtol})")
        tol = (rtol * s[:, 0]) ** 2
        eigenvalues = s**2
        rank = (eigenvalues > tol[:, None]).sum(dim=1)
        return RankInfo(rank=rank, eigenvalues=eigenvalues, tolerance=tol)

    # -- products and projections -------------------------------------------------------
    def _as_batch(self, v: Tensor) -> Tensor:
        """Accept (d,), (1, d), (N, d) or the same with the input shape; return (N, d)."""
        v = v.to(self.factor.dtype)
        if v.numel() == self.dim:
            return v.reshape(1, self.dim).expand(self.n_samples, self.dim)
        if v.numel() != self.n_samples * self.dim or v.shape[0] != self.n_samples:
            raise InputError(
                f"vectors must have shape (N, d) = ({self.n_samples}, {self.dim}), (d,) or the "
                f"input shape {self.input_shape} with a batch axis (got {tuple(v.shape)})"
            )
        return v.reshape(self.n_samples, self.dim)

    def mv(self, v: Tensor) -> Tensor:
        """Matrix-vector products ``M_k v_k``: ``v`` (N, d) or (d,) → (N, d)."""
        v = self._as_batch(v)
        return torch.einsum("ncd,nc->nd", self.factor, torch.einsum("ncd,nd->nc", self.factor, v))

    def quadratic(self, v: Tensor) -> Tensor:
        """``(N,)`` the quadratic forms ``v_kᵀ M_k v_k`` (= 2·KL to second order)."""
        v = self._as_batch(v)
        return torch.einsum("ncd,nd->nc", self.factor, v).pow(2).sum(dim=1)

    def leaf_basis(self, rtol: float | None = None) -> tuple[Tensor, Tensor]:
        """Orthonormal basis of the image (the leaf tangent space D_x = Im M).

        Returns:
            ``(basis, mask)``: ``basis`` (N, C-1, d) rows orthonormal, ``mask`` (N, C-1) bool
            marking the rows inside the numerical rank.
        """
        info = self.rank(rtol)
        k = self.num_classes - 1
        mask = torch.arange(k, device=info.rank.device)[None, :] < info.rank[:, None]
        return self.svd()[2][:, :k], mask

    def project_leaf(self, v: Tensor, rtol: float | None = None) -> Tensor:
        """Orthogonal projection of ``v`` (N, d) or (d,) onto D_x = Im M → (N, d)."""
        v = self._as_batch(v)
        basis, mask = self.leaf_basis(rtol)
        coeff = torch.einsum("nkd,nd->nk", basis, v) * mask
        return torch.einsum("nkd,nk->nd", basis, coeff)

    def project_kernel(self, v: Tensor, rtol: float | None = None) -> Tensor:
        """Orthogonal projection of ``v`` onto ker M (the directions the model ignores)."""
        v = self._as_batch(v)
        return v - self.project_leaf(v, rtol)

    def solve(self, v: Tensor, damping: float) -> Tensor:
        """``(M + damping·I)⁻¹ v`` exactly, through the SVD (Woodbury), ``damping > 0``."""
        if not damping > 0:
            raise InputError(f"damping must be > 0 (got {damping})")
        v = self._as_batch(v)
        _, s, vh = self.svd()
        coeff = torch.einsum("nkd,nd->nk", vh, v)
        inside = torch.einsum("nkd,nk->nd", vh, coeff / (s**2 + damping))
        return inside + (v - torch.einsum("nkd,nk->nd", vh, coeff)) / damping

    def mean(self):
        """The average ``(1/N) Σ_k M_k`` as a :class:`~leafscope.information.mean.MeanInformation`
        (for the Fisher matrix: the data-set Fisher of the model on these points)."""
        from leafscope.information.mean import MeanInformation

        return MeanInformation(self)

    def dense(self) -> Tensor:
        """The full matrices ``(N, d, d)``. Only for small d: refuses above 2 GiB."""
        need = self.n_samples * self.dim**2 * self.factor.element_size()
        if need > DENSE_LIMIT_BYTES:
            raise InputError(
                f"dense() would allocate {need / 1024**3:.1f} GiB for {self.n_samples} matrices of "
                f"size {self.dim}×{self.dim}; use eigh(), mv() or the projections instead"
            )
        return self.factor.transpose(1, 2) @ self.factor


def _cast_model(model: nn.Module, dtype: torch.dtype | None, x: Tensor) -> tuple[nn.Module, Tensor]:
    if dtype is None:
        return model, x
    check_compute_dtype(dtype)
    return cast_model(model, dtype), x.to(dtype)


def _factor(logits: Tensor, jac: Tensor) -> tuple[Tensor, Tensor]:
    """Factor ``B(p) J`` (N, C, d) and probabilities from logits (N, C) and Jacobian (N, C, d),
    both formed in the accumulation dtype of the Jacobian's dtype (float32 for low precision)."""
    acc = accumulation_dtype(jac.dtype)
    logits, jac = logits.to(acc), jac.to(acc)
    log_p = torch.log_softmax(logits, dim=1)
    p = log_p.exp()
    mean_grad = torch.einsum("nc,ncd->nd", p, jac)
    factor = p.sqrt()[:, :, None] * (jac - mean_grad[:, None, :])
    return factor, p


class DataInformation(InformationMatrix):
    """Data information matrix ``G(x, w) = Jᵀ M(p) J`` (Fisher information in input space).

    Args:
        model: any classifier mapping ``(N, *shape)`` to logits ``(N, C)``; evaluated in eval
            mode (its flags are restored afterwards).
        x: points ``(N, *shape)`` at which to evaluate G (e.g. images in [0, 1]).
        dtype: compute in this dtype (``torch.float64`` recommended for spectra; the model is
            copied, not modified); ``torch.bfloat16`` / ``torch.float16`` run the forward and
            the Jacobian in low precision and form the factor in float32 (see the module
            docstring).
        chunk_size: samples per vectorised Jacobian chunk (bounds memory).
        class_chunk_size: classes per vectorised backward pass (bounds memory for many
            classes: a 1000-class ResNet-18 at 224² peaked at 2.5–3.1 GB in chunks of 20–50).
        force_eval: evaluate in eval mode (default); see :func:`input_jacobian`.
        attention: route of scaled-dot-product attention
            (:func:`~leafscope.information.jacobian.attention_route`).
        probs_model: in low precision, the float32 model whose logits give p (default: the
            model cast to float32; ignored in float32 / float64).

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> model, x = tiny_mlp(n_in=12, n_classes=4), torch.rand(8, 12)
        >>> G = DataInformation(model, x, dtype=torch.float64)
        >>> G.eigenvalues().shape  # (N, C-1): the nonzero eigenvalues, descending
        torch.Size([8, 3])
        >>> v = G.project_kernel(torch.randn(8, 12, dtype=torch.float64))  # unseen directions
        >>> bool(G.mv(v).abs().max() < 1e-10)
        True
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        *,
        dtype: torch.dtype | None = None,
        chunk_size: int | None = None,
        class_chunk_size: int | None = None,
        force_eval: bool = True,
        attention: str = "auto",
        probs_model: nn.Module | None = None,
    ):
        original, x_in = model, x
        model, x = _cast_model(model, dtype, x)
        reference = reference_model(original, x.dtype, probs_model)
        logits, jac = input_jacobian(
            model,
            x,
            chunk_size=chunk_size,
            class_chunk_size=class_chunk_size,
            force_eval=force_eval,
            attention=attention,
        )
        factor, p = _factor(probability_logits(reference, x_in, logits, force_eval), jac)
        del jac
        super().__init__(factor, p, tuple(x.shape[1:]), compute_dtype=x.dtype)
        self.logits = logits


class FisherInformation(InformationMatrix):
    """Per-sample Fisher matrix ``F(x, w) = J_wᵀ M(p) J_w`` in parameter space (P×P each).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: points ``(N, *shape)``.
        parameters: parameter names to include (default: all trainable, in model order).
        dtype: compute dtype (the model is copied when it differs).
        chunk_size: samples per vectorised chunk.

    Attributes:
        parameter_names: the names, in the order of the flattened parameter axis.

    Examples:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> F = FisherInformation(model, torch.rand(5, 3), dtype=torch.float64)
        >>> F.dim, F.parameter_names  # P = 3*4 + 4 + 4*2 + 2 parameters
        (26, ['0.weight', '0.bias', '2.weight', '2.bias'])
        >>> F.eigenvalues().shape  # C - 1 = 1 nonzero eigenvalue per sample
        torch.Size([5, 1])
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        *,
        parameters: list[str] | None = None,
        dtype: torch.dtype | None = None,
        chunk_size: int | None = None,
    ):
        model, x = _cast_model(model, dtype, x)
        logits, jac, names = parameter_jacobian(
            model, x, parameters=parameters, chunk_size=chunk_size
        )
        factor, p = _factor(logits, jac)
        super().__init__(factor, p, (factor.shape[2],), compute_dtype=jac.dtype)
        self.logits = logits
        self.parameter_names = names
