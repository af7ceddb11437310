"""Knowledge transfer through the data information matrix (theory §3).

For a model trained on one data set, and for each data set D:

- the DIM spectrum at the first ``points`` training images of D (medians of log10 λ_1, log10
  λ_{C-1}, Δ and log10 tr G: :meth:`PointSpectra.summary`);
- the transfer accuracy: only the last linear layer is retrained on D (L2-regularised
  multinomial logistic regression, scikit-learn's L-BFGS, on the frozen network's cached
  penultimate features: :func:`fit_linear_head`) and scored on D's test split;
- a spectral distance between data sets: the mean over eigenvalue index k of the 1-Wasserstein
  distance between the distributions of log10 λ_k (in decades). The *training distance* of D is
  its distance to held-out test images of the training set (so the training set's own row
  shows the sampling floor).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.information.spectrum import PointSpectra, point_spectra
from leafscope.models.features import penultimate_features

__all__ = [
    "TransferResult",
    "TransferRow",
    "fit_linear_head",
    "head_transfer_accuracy",
    "row_of",
    "spectral_distance",
    "transfer_result",
    "transfer_row",
    "transfer_table",
]


@dataclass
class TransferRow:
    """One data set's row (log10 of eigenvalues in 1/input-unit²; accuracy in [0, 1])."""

    dataset: str
    median_log10_highest: float
    median_log10_lowest: float
    median_delta: float
    median_log10_trace: float
    transfer_accuracy: float | None
    training_distance: float | None = None
    points: int = 0
    transfer_train_points: int = 0
    transfer_val_points: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TransferResult:
    """Rows, pairwise spectral distances (decades) and the per-point log spectra."""

    rows: list[TransferRow]
    distances: dict[str, dict[str, float]]
    log10_eigenvalues: dict[str, list[list[float]]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "rows": [r.to_json() for r in self.rows],
            "distances": self.distances,
            "settings": self.settings,
            "log10_eigenvalues": self.log10_eigenvalues,
        }

    def markdown(self) -> str:
        """The table as Markdown (accuracy in %)."""
        lines = [
            "| data set | highest | lowest | Δ | trace | transfer acc. | training distance |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            acc = "—" if r.transfer_accuracy is None else f"{100 * r.transfer_accuracy:.1f}%"
            dist = "—" if r.training_distance is None else f"{r.training_distance:.2f}"
            lines.append(
                f"| {r.dataset} | {r.median_log10_highest:.2f} | {r.median_log10_lowest:.2f} | "
                f"{r.median_delta:.2f} | {r.median_log10_trace:.2f} | {acc} | {dist} |"
            )
        return "\n".join(lines)


def _log_spectra(spectra: PointSpectra | np.ndarray) -> np.ndarray:
    """log10 eigenvalues ``(N, C-1)`` of a :class:`PointSpectra` (or such an array itself)."""
    if isinstance(spectra, PointSpectra):
        return spectra.log10_eigenvalues().numpy()
    return np.asarray(spectra, dtype=np.float64)


def spectral_distance(a: PointSpectra | np.ndarray, b: PointSpectra | np.ndarray) -> float:
    """Mean over k of W1(log10 λ_k on a, log10 λ_k on b), in decades (symmetric, ≥ 0).

    ``a`` and ``b`` are :class:`PointSpectra` or their log10 eigenvalues ``(N, C-1)``.
    """
    la, lb = _log_spectra(a), _log_spectra(b)
    if la.ndim != 2 or lb.ndim != 2 or la.shape[1] != lb.shape[1]:
        raise InputError(
            f"spectra have shapes {la.shape} and {lb.shape}: compare spectra (N, C-1) of one model"
        )
    return float(np.mean([wasserstein_distance(la[:, k], lb[:, k]) for k in range(la.shape[1])]))


def fit_linear_head(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> nn.Linear:
    """Retrain a last layer: L2-regularised logistic regression on fixed features (scikit-learn).

    The features are standardised (per-feature mean and std of ``features``), then
    ``sklearn.linear_model.LogisticRegression`` (L-BFGS, float64, multinomial for three or more
    classes, binary logistic for two) minimises ``mean cross-entropy + ½·weight_decay·‖W‖²``
    (the bias is not penalised), i.e. ``C = 1 / (weight_decay · N)``; ``weight_decay = 0`` is
    unpenalised (``C = ∞``). The standardisation is folded back into the returned layer. The
    default 1e-4 is a light penalty: it keeps the problem strictly convex (a unique, finite
    solution on separable features) while barely shrinking the weights. Classes absent from
    ``labels`` get zero weights and a bias of −1e4 (never predicted).

    Args:
        features: ``(N, F)`` penultimate features of the frozen network.
        labels: ``(N,)`` integer labels in ``[0, num_classes)``.
        num_classes: output size.
        weight_decay: L2 penalty on the weights, per sample (see above); >= 0.
        max_iter: at most this many L-BFGS iterations (scikit-learn's default tolerance); a
            solve stopped by this cap is used as is, without a ConvergenceWarning (nearly
            separable features converge slowly under the light default penalty).

    Returns:
        A float32 ``nn.Linear(F, num_classes)`` whose logits give the fitted probabilities.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if features.dim() != 2 or labels.shape != (features.shape[0],) or len(labels) == 0:
        raise InputError(
            f"need features (N, F) and labels (N,), N >= 1 (got {tuple(features.shape)} and "
            f"{tuple(labels.shape)})"
        )
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise InputError(
            f"labels span [{int(labels.min())}, {int(labels.max())}] but num_classes is "
            f"{num_classes}: give labelled data with labels in [0, num_classes)"
        )
    if not weight_decay >= 0:
        raise InputError(f"weight_decay must be >= 0 (got {weight_decay!r})")
    x = features.detach().double().cpu()
    scale = x.std(dim=0).clamp_min(1e-8) if len(x) > 1 else torch.ones(x.shape[1], dtype=x.dtype)
    mean = x.mean(dim=0)
    z = ((x - mean) / scale).numpy()
    y = labels.long().cpu().numpy()
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    b = torch.full((num_classes,), -1e4, dtype=torch.float64)
    present = np.unique(y)
    if len(present) == 1:
        b[int(present[0])] = 0.0
    else:
        c = np.inf if weight_decay == 0 else 1.0 / (weight_decay * len(y))
        with warnings.catch_warnings():  # a capped solve is the documented behaviour
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=max_iter).fit(z, y)
        coef = torch.from_numpy(clf.coef_).double()
        intercept = torch.from_numpy(clf.intercept_).double()
        if len(present) == 2:  # one logit difference d: softmax of (-d/2, d/2) = sigmoid(d)
            coef = torch.cat([-coef, coef]) / 2
            intercept = torch.cat([-intercept, intercept]) / 2
        idx = torch.from_numpy(clf.classes_).long()
        w[idx], b[idx] = coef, intercept
    head = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_((w / scale).float())
        head.bias.copy_((b - (w / scale) @ mean).float())
    return head


def head_transfer_accuracy(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    num_classes: int,
) -> float | None:
    """Accuracy on ``val`` after retraining only the last layer on ``train``
    (:func:`fit_linear_head` on the frozen network's penultimate features); None when either
    set has unlabelled points (label -1) or fewer than two classes exist."""
    if (train[1] < 0).any() or (val[1] < 0).any() or num_classes < 2:
        return None
    if len(train[1]) == 0 or len(val[1]) == 0:
        return None
    f_tr = penultimate_features(model, train[0]).features
    f_va = penultimate_features(model, val[0]).features
    head = fit_linear_head(f_tr, train[1], num_classes)
    with torch.no_grad():
        return float((head(f_va).argmax(dim=1) == val[1]).float().mean())


def _transfer_accuracy(model, train, val, train_points: int, val_points: int) -> tuple:
    tr = (train.images[:train_points], train.labels[:train_points])
    va = (val.images[:val_points], val.labels[:val_points])
    acc = head_transfer_accuracy(model, tr, va, train.num_classes)
    return (None, 0, 0) if acc is None else (acc, len(tr[1]), len(va[1]))


def row_of(
    name: str,
    spectra: PointSpectra,
    accuracy: float | None = None,
    transfer_train_points: int = 0,
    transfer_val_points: int = 0,
) -> TransferRow:
    """The table row of data set ``name`` from its spectra and transfer accuracy."""
    s = spectra.summary()
    return TransferRow(
        dataset=name,
        median_log10_highest=s.median_log10_highest,
        median_log10_lowest=s.median_log10_lowest,
        median_delta=s.median_delta,
        median_log10_trace=s.median_log10_trace,
        transfer_accuracy=accuracy,
        points=len(spectra.trace),
        transfer_train_points=transfer_train_points if accuracy is not None else 0,
        transfer_val_points=transfer_val_points if accuracy is not None else 0,
    )


def transfer_row(
    model: nn.Module,
    name: str,
    train,
    val=None,
    *,
    points: int = 250,
    transfer_train_points: int = 5000,
    transfer_val_points: int = 1000,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> tuple[TransferRow, PointSpectra]:
    """One row of the table.

    Args:
        model: the frozen classifier.
        name: the row's label.
        train: an :class:`~leafscope.data.ImageDataset` (spectrum on its first ``points`` images;
            the new last layer is trained on its first ``transfer_train_points``).
        val: the data set scoring the new layer (its first ``transfer_val_points``); None or
            unlabelled data give ``transfer_accuracy=None``.
        points: points for the spectrum.
        dtype: spectrum dtype (float64 recommended).

    Returns:
        ``(row, spectra)``.
    """
    if points < 1 or len(train.images) == 0:
        raise InputError(f"points must be >= 1 and {name} non-empty (got {points})")
    spectra = point_spectra(model, train.images[:points], dtype=dtype, progress=progress)
    acc, n_tr, n_va = (None, 0, 0)
    if val is not None:
        acc, n_tr, n_va = _transfer_accuracy(
            model, train, val, transfer_train_points, transfer_val_points
        )
    return row_of(name, spectra, acc, n_tr, n_va), spectra


def transfer_table(
    model: nn.Module,
    datasets: dict,
    *,
    reference=None,
    points: int = 250,
    transfer_train_points: int = 5000,
    transfer_val_points: int = 1000,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> TransferResult:
    """The full transfer table.

    Args:
        model: classifier trained on some data set.
        datasets: ``name -> (train_set, val_set or None)`` image sets.
        reference: held-out images of the model's own training set (``(M, *shape)`` tensor) for
            the training distance; None leaves it empty.
        points, transfer_train_points, transfer_val_points, dtype: see :func:`transfer_row`.

    Returns:
        A :class:`TransferResult`.
    """
    if not datasets:
        raise InputError("give at least one data set, e.g. {'mnist': (train, test)}")
    rows, spectra = [], {}
    for name, (train, val) in datasets.items():
        row, spec = transfer_row(
            model,
            name,
            train,
            val,
            points=points,
            transfer_train_points=transfer_train_points,
            transfer_val_points=transfer_val_points,
            dtype=dtype,
            progress=progress,
        )
        rows.append(row)
        spectra[name] = spec
    ref = None
    if reference is not None:
        ref = point_spectra(model, reference[:points], dtype=dtype, progress=progress)
    settings = {
        "points": points,
        "transfer_train_points": transfer_train_points,
        "transfer_val_points": transfer_val_points,
        "dtype": str(dtype).replace("torch.", ""),
    }
    return transfer_result(rows, spectra, ref, settings)


def transfer_result(
    rows: list[TransferRow],
    spectra: dict[str, PointSpectra | np.ndarray],
    reference: PointSpectra | np.ndarray | None = None,
    settings: dict | None = None,
) -> TransferResult:
    """Assemble the table from its rows (computed anywhere, e.g. one task per data set).

    Args:
        rows: one :class:`TransferRow` per data set (from :func:`transfer_row`), in order.
        spectra: row name -> its :class:`PointSpectra` (or its log10 eigenvalues (N, C-1)).
        reference: spectra at held-out images of the training set (or their log10
            eigenvalues): fills each row's ``training_distance`` (None leaves it empty).
        settings: recorded in the result (the distance definitions are added).

    Returns:
        A :class:`TransferResult` (pairwise distances in decades).
    """
    logs = {row.dataset: _log_spectra(spectra[row.dataset]) for row in rows}
    if reference is not None:
        ref = _log_spectra(reference)
        for row in rows:
            row.training_distance = spectral_distance(logs[row.dataset], ref)
    names = [r.dataset for r in rows]
    distances = {a: {b: spectral_distance(logs[a], logs[b]) for b in names} for a in names}
    settings = {
        **(settings or {}),
        "distance": "mean over k of W1 between log10 λ_k distributions (decades)",
        "training_distance": "distance to held-out test images of the training set",
    }
    return TransferResult(
        rows=rows,
        distances=distances,
        log10_eigenvalues={k: logs[k].tolist() for k in names},
        settings=settings,
    )
