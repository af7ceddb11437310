"""Export to other libraries: G of a point as a SciPy ``LinearOperator``, and the DIM scores as
a pytorch-ood ``Detector`` and as an OpenOOD postprocessor.

* :func:`information_operator`: ``G(x) = Jᵀ (diag p − p pᵀ) J`` at one point as a
  :class:`scipy.sparse.linalg.LinearOperator` of shape (n, n), n the input size. ``G v`` is
  one Jacobian–vector product (``torch.func.jvp``), an O(C) product with ``diag p − p pᵀ`` and
  one vector–Jacobian product (``torch.func.vjp``); nothing of size n×n or C×n is formed, so
  ``scipy.sparse.linalg.eigsh``, ``cg`` or ``LinearOperator`` algebra run on G of any model.
* :class:`DIMDetector`: the DIM scores (``dim-trace``: ``−log10 tr G``; ``dim-spectrum``: the
  density of the log-spectrum at training points) with the API of pytorch-ood's
  ``pytorch_ood.api.Detector``: ``fit(loader)``, ``predict(x)`` → outlier scores (higher = more
  out-of-distribution), ``__call__ = predict``. When pytorch-ood is installed the class is
  registered as a virtual subclass of its ``Detector``; it is not needed otherwise.
* :class:`DIMPostprocessor`: the same scores as a postprocessor OpenOOD's ``Evaluator`` calls
  (``setup(net, id_loader_dict, ood_loader_dict)``, ``postprocess(net, data) -> (pred,
  conf)``, ``inference(net, loader, progress) -> (pred, conf, label)`` arrays; ``conf``:
  higher = more in-distribution, as OpenOOD expects).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from leafscope.errors import InputError, NotFittedError
from leafscope.information.jacobian import (
    attention_route,
    cast_model,
    check_inputs,
    constant_parameters,
    eval_mode,
    logits_of,
)

__all__ = ["DIMDetector", "DIMPostprocessor", "information_operator"]


# ------------------------------------------------------------------------------ LinearOperator
def information_operator(
    model: nn.Module,
    x: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    force_eval: bool = True,
    attention: str = "auto",
) -> Any:
    """G of one point as a :class:`scipy.sparse.linalg.LinearOperator` (matvec by jvp + vjp).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: one point, ``shape`` or ``(1, *shape)``.
        dtype: the dtype of the model, the products and the operator (float64 by default: the
            operator's ``dtype`` is the NumPy one).
        force_eval: evaluate in eval mode (default).
        attention: route of scaled-dot-product attention (jvps need ``math`` on the CPU;
            ``auto`` takes it).

    Returns:
        A symmetric positive semi-definite ``LinearOperator`` of shape ``(n, n)``, n = x.numel(),
        acting on flat vectors in the input's layout; also ``.probs`` (C,) and ``.logits`` (C,).
        Its rank is at most C − 1.

    Examples:
        >>> from scipy.sparse.linalg import eigsh
        >>> from leafscope.information import DataInformation
        >>> from leafscope.testing import tiny_mlp
        >>> model, x = tiny_mlp(n_in=12, n_classes=4), torch.rand(12)
        >>> G = information_operator(model, x)
        >>> top = eigsh(G, k=2, which="LA", return_eigenvectors=False)
        >>> exact = DataInformation(model, x[None], dtype=torch.float64).eigenvalues()[0, :2]
        >>> bool(np.allclose(np.sort(top)[::-1], exact.numpy()))
        True
    """
    from scipy.sparse.linalg import LinearOperator

    x = torch.as_tensor(x)
    shape = tuple(x.shape[1:]) if x.dim() >= 2 and x.shape[0] == 1 else tuple(x.shape)
    point = x.reshape(1, *shape).to(dtype)
    check_inputs(point)
    work = cast_model(model, dtype)
    n = int(np.prod(shape))
    state: dict[str, Any] = {}
    with eval_mode(work, force_eval), constant_parameters(work):
        with attention_route(attention, point.device, forward_ad=True):
            logits, vjp_fn = vjp(lambda z: logits_of(work, z), point)
    p = torch.softmax(logits.detach(), dim=1)
    state.update(vjp_fn=vjp_fn)

    def apply(block: Tensor) -> Tensor:
        """G on columns (n, k) → (n, k)."""
        z = block.T.reshape(-1, 1, *shape).to(device=point.device, dtype=dtype)
        with eval_mode(work, force_eval), constant_parameters(work):
            with attention_route(attention, point.device, forward_ad=True):
                jz = vmap(lambda t: jvp(lambda u: logits_of(work, u), (point,), (t,))[1])(z)
                mjz = p * jz - p * (p * jz).sum(dim=-1, keepdim=True)  # (k, 1, C)
                out = vmap(lambda c: state["vjp_fn"](c)[0])(mjz)
        return out.reshape(z.shape[0], n).T

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v).reshape(n, 1)
        return apply(torch.from_numpy(v.copy())).detach().cpu().numpy().reshape(n)

    def matmat(v: np.ndarray) -> np.ndarray:
        return apply(torch.from_numpy(np.array(v).reshape(n, -1))).detach().cpu().numpy()

    numpy_dtype = torch.empty((), dtype=dtype).numpy().dtype
    operator = LinearOperator(
        (n, n), matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat, dtype=numpy_dtype
    )
    operator.probs = p[0].detach().cpu()
    operator.logits = logits[0].detach().cpu()
    return operator


# ---------------------------------------------------------------------------------- pytorch-ood
def _batches(loader: Iterable, what: str) -> Iterable[tuple[Tensor, Tensor | None]]:
    """``(x, y)`` of every batch of a DataLoader: tuples/lists ``(x, y, ...)``, dicts with
    ``data``/``label`` (OpenOOD) or ``x``/``y``, or bare tensors."""
    for batch in loader:
        if isinstance(batch, Tensor):
            yield batch, None
        elif isinstance(batch, Mapping):
            x = batch.get("data", batch.get("x"))
            y = batch.get("label", batch.get("y"))
            if x is None:
                raise InputError(f"{what}: a dict batch needs a 'data' (or 'x') entry")
            yield x, y
        elif isinstance(batch, (tuple, list)) and batch:
            yield batch[0], batch[1] if len(batch) > 1 else None
        else:
            raise InputError(f"{what}: batches must be tensors, (x, y) pairs or dicts")


def _gather(loader: Iterable, what: str, limit: int | None) -> tuple[Tensor, Tensor | None]:
    xs, ys, count = [], [], 0
    for x, y in _batches(loader, what):
        xs.append(torch.as_tensor(x).detach().cpu())
        if y is not None:
            ys.append(torch.as_tensor(y).detach().cpu())
        count += xs[-1].shape[0]
        if limit is not None and count >= limit:
            break
    if not xs:
        raise InputError(f"{what}: the loader gave no batches")
    x = torch.cat(xs)[:limit]
    y = torch.cat(ys)[:limit] if len(ys) == len(xs) else None
    return x, y


_REGISTERED = False


def _register_with_pytorch_ood() -> None:
    """Make :class:`DIMDetector` a virtual subclass of ``pytorch_ood.api.Detector`` when
    pytorch-ood imports (once; nothing when it is absent or broken)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    try:
        from pytorch_ood.api import Detector
    except Exception:  # noqa: BLE001 - absent, or failing to import (e.g. its torchvision)
        return
    Detector.register(DIMDetector)


class DIMDetector:
    """The DIM scores as a pytorch-ood ``Detector`` (see the module docstring).

    Args:
        model: the classifier (evaluated in eval mode; read only).
        score: ``dim-trace`` (``−log10 tr G``; ``fit`` optional) or ``dim-spectrum`` (Gaussian
            or kNN density of the log-spectrum at training points; ``fit`` required).
        dtype: compute dtype of G (float64 by default).
        max_fit_points: at most this many training points in ``fit``.
        **kwargs: options of the leafscope detector (``method``, ``k`` for ``dim-spectrum``).

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> detector = DIMDetector(tiny_mlp(n_in=6, n_classes=3))
        >>> detector(torch.rand(4, 6)).shape  # outlier scores: higher = more OOD
        torch.Size([4])
    """

    SCORES = ("dim-trace", "dim-spectrum")

    def __init__(
        self,
        model: nn.Module,
        score: str = "dim-trace",
        *,
        dtype: torch.dtype = torch.float64,
        max_fit_points: int | None = 1000,
        **kwargs: Any,
    ):
        from leafscope.applications.detectors import make_detector

        if score not in self.SCORES:
            raise InputError(f"unknown DIM score {score!r}: use one of {', '.join(self.SCORES)}")
        _register_with_pytorch_ood()
        self.model, self.score = model, score
        self.detector = make_detector(
            score, model, dtype=dtype, max_fit_points=max_fit_points, **kwargs
        )
        if score == "dim-trace":
            self.detector.fit(torch.zeros(1, 1))  # nothing to estimate: usable without fit

    def fit(self, data_loader: Iterable, device: str | torch.device = "cpu") -> DIMDetector:
        """Fit on the in-distribution batches of ``data_loader`` ((x, y) pairs, dicts or
        tensors); ``device`` is where the inputs go (the model's device)."""
        x, y = _gather(data_loader, "fit", self.detector.max_fit_points)
        self.detector.fit(x.to(device), None if y is None else y.to(device))
        return self

    def fit_features(self, *args: Any, **kwargs: Any) -> DIMDetector:
        """Not available: G needs the model and the inputs, not features."""
        raise InputError(
            "DIM scores need the model and its inputs (G is taken in input space): use fit"
        )

    def predict(self, x: Tensor) -> Tensor:
        """Outlier scores ``(N,)`` float64, higher = more out-of-distribution (pytorch-ood's
        convention: minus leafscope's ``score_samples``)."""
        try:
            scores = self.detector.score_samples(torch.as_tensor(x))
        except NotFittedError as exc:
            raise NotFittedError(f"{self.score}: call fit(loader) before predict") from exc
        return torch.from_numpy(-np.asarray(scores, dtype=np.float64))

    def predict_features(self, *args: Any, **kwargs: Any) -> Tensor:
        """Not available (see :meth:`fit_features`)."""
        return self.fit_features()  # raises

    __call__ = predict


# ------------------------------------------------------------------------------------- OpenOOD
class DIMPostprocessor:
    """The DIM scores as an OpenOOD postprocessor (``BasePostprocessor``'s methods).

    Args:
        config: OpenOOD's config (kept, unused).
        score: ``dim-trace`` or ``dim-spectrum`` (see :class:`DIMDetector`).
        dtype: compute dtype of G.
        fit_points: training points (``id_loader_dict["train"]``) used by ``setup``.
        **kwargs: options of the leafscope detector.

    ``conf`` is leafscope's ``score_samples`` (higher = more in-distribution), ``pred`` the
    arg-max of the logits.
    """

    APS_mode = False
    hyperparam_search_done = True

    def __init__(
        self,
        config: Any = None,
        *,
        score: str = "dim-trace",
        dtype: torch.dtype = torch.float64,
        fit_points: int = 1000,
        **kwargs: Any,
    ):
        self.config = config
        self.score, self.dtype, self.fit_points, self.kwargs = score, dtype, fit_points, kwargs
        self.detector: DIMDetector | None = None
        self.args_dict: dict[str, Any] = {}

    def _detector(self, net: nn.Module) -> DIMDetector:
        if self.detector is None or self.detector.model is not net:
            if self.score != "dim-trace" and self.detector is not None:
                raise NotFittedError(f"{self.score} was set up for another network: call setup")
            self.detector = DIMDetector(
                net, self.score, dtype=self.dtype, max_fit_points=self.fit_points, **self.kwargs
            )
        return self.detector

    def setup(self, net: nn.Module, id_loader_dict: Mapping[str, Any], ood_loader_dict: Any):
        """Fit on ``id_loader_dict["train"]`` when the score needs it (no OOD data is used)."""
        detector = self._detector(net)
        if self.score != "dim-trace":
            loader = id_loader_dict.get("train") if isinstance(id_loader_dict, Mapping) else None
            if loader is None:
                raise InputError(f"{self.score} needs id_loader_dict['train'] to fit")
            detector.fit(loader, _device_of(net))

    def postprocess(self, net: nn.Module, data: Tensor) -> tuple[Tensor, Tensor]:
        """``(pred, conf)`` of a batch: the predicted classes and the DIM confidence."""
        detector = self._detector(net)
        with torch.enable_grad():  # OpenOOD may call this under no_grad: G needs gradients
            conf = -detector.predict(data)
        with torch.no_grad():
            pred = net(data).argmax(dim=1)
        return pred.cpu(), conf

    def inference(
        self, net: nn.Module, data_loader: Iterable, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pred, conf, label)`` arrays over every batch of ``data_loader`` (OpenOOD's batches
        are dicts with ``data`` and ``label``)."""
        preds, confs, labels = [], [], []
        device = _device_of(net)
        for x, y in _batches(data_loader, "inference"):
            pred, conf = self.postprocess(net, torch.as_tensor(x).to(device))
            preds.append(pred.numpy())
            confs.append(conf.numpy())
            labels.append(np.full(len(pred), -1) if y is None else torch.as_tensor(y).cpu().numpy())
        return (
            np.concatenate(preds).astype(int),
            np.concatenate(confs),
            np.concatenate(labels).astype(int),
        )


def _device_of(net: nn.Module) -> torch.device:
    for tensor in (*net.parameters(), *net.buffers()):
        return tensor.device
    return torch.device("cpu")
