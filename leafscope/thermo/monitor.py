"""Temperature monitor: kinetic energy of parameter groups from the actual parameter change.

Convention (theory §4, Lapenna–Faglioni–Fioresi 2023): time is counted in optimizer steps,
``Δt = 1 step``; every parameter has mass ``m = 1`` and ``k_B = 1``. For a group of ``d``
parameters the instantaneous kinetic energy and temperature are

    v_k(t) = w_k(t) − w_k(t−1)          (actual change made by the optimizer)
    K(t)   = Σ_k ½ v_k(t)²
    T(t)   = K(t) / d                   (units: squared parameter units per step²)

and the temperature of the group is the time average of ``T(t)`` over a window of epochs.
The ½ is kept (equipartition would drop it; rankings do not change). Because the velocity is
the actual change, momentum, weight decay and Adam are all accounted for: with plain SGD it
equals ``−η·∇L``, otherwise it does not.

``velocity="epoch"`` instead uses the displacement over a whole epoch divided by the number
of steps in it, ``v = (w(end) − w(start)) / n_steps`` (the drift, without the step-to-step
fluctuation), one value per epoch.

Usage in any training loop::

    monitor = TemperatureMonitor(groups={"conv1": "filters"})
    monitor.attach(model, optimizer)
    for epoch in range(E):
        for x, y in loader:
            ...; optimizer.step()
            monitor.step()
        monitor.end_epoch()
    monitor.temperatures()["conv1"]      # (6,) tensor, the time average over the window

or pass it as a callback to :func:`leafscope.training.fit`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from leafscope.errors import CheckpointError, InputError, NotFittedError
from leafscope.thermo.groups import KINDS, LayerGroups, resolve_layer
from leafscope.training.callbacks import Callback

__all__ = ["TemperatureHistory", "TemperatureMonitor", "optimizer_settings"]

VELOCITIES = ("step", "epoch")
SNAPSHOTS = ("epoch", "step")


@dataclass
class TemperatureHistory:
    """What a monitor recorded (compact: per-epoch averages plus a downsampled trace).

    Attributes:
        layers: layer name → group kind.
        n_groups: layer name → number of groups.
        group_size: layer name → parameters per group ``d``.
        epoch_temperatures: layer name → ``[epoch][group]`` mean instantaneous temperature of
            each closed epoch (squared parameter units per step²).
        steps_per_epoch: optimizer steps in each closed epoch.
        trace_steps: step index (1-based, end of block) of each trace entry.
        trace: layer name → ``[entry][group]`` temperature averaged over ``downsample`` steps.
        optimizer: optimizer class name and its hyper-parameters (first param group).
        velocity: ``"step"`` or ``"epoch"``; convention: the formula used.
    """

    layers: dict[str, str]
    n_groups: dict[str, int]
    group_size: dict[str, int]
    epoch_temperatures: dict[str, list[list[float]]]
    steps_per_epoch: list[int]
    trace_steps: list[int] = field(default_factory=list)
    trace: dict[str, list[list[float]]] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    velocity: str = "step"
    convention: str = "T = (1/d) sum_k 1/2 (w_k(t) - w_k(t-1))^2, dt = 1 step, m = k_B = 1"

    def temperatures(self, window: int | None = None) -> dict[str, Tensor]:
        """Step-weighted time average over the last ``window`` epochs (``None`` = all).

        Returns:
            layer name → ``(n_groups,)`` float64 tensor.
        """
        epochs = len(self.steps_per_epoch)
        if epochs == 0:
            raise NotFittedError("no epoch was recorded: train at least one epoch first")
        start = 0 if window is None else max(0, epochs - _check_window(window))
        out = {}
        for layer, rows in self.epoch_temperatures.items():
            temps = torch.tensor(rows[start:], dtype=torch.float64)
            if self.velocity == "step":
                weights = torch.tensor(self.steps_per_epoch[start:], dtype=torch.float64)
            else:
                weights = torch.ones(temps.shape[0], dtype=torch.float64)
            out[layer] = (temps * weights[:, None]).sum(0) / weights.sum().clamp_min(1)
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TemperatureHistory:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


def optimizer_settings(optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Class name and scalar hyper-parameters of the first parameter group."""
    if optimizer is None:
        return {}
    settings: dict[str, Any] = {"name": type(optimizer).__name__}
    for key, value in optimizer.param_groups[0].items():
        if key == "params":
            continue
        if isinstance(value, Tensor):
            value = value.tolist()
        if isinstance(value, (bool, int, float, str, tuple, list)) or value is None:
            settings[key] = list(value) if isinstance(value, tuple) else value
    return settings


class TemperatureMonitor(Callback):
    """Record the temperature of parameter groups during training.

    Args:
        groups: layer name → kind (``"filters"``, ``"neurons"``, ``"features"``), e.g.
            ``{"conv1": "filters"}``. ``None`` = every ``Conv2d`` as filters and every
            ``Linear`` as neurons.
        window: default number of last epochs averaged by :meth:`temperatures`
            (``None`` = all epochs).
        snapshot: ``"epoch"`` keeps per-epoch averages only; ``"step"`` also keeps a trace of
            the instantaneous temperature averaged over blocks of ``downsample`` steps.
        downsample: block length in steps of the trace (``snapshot="step"``).
        velocity: ``"step"`` (actual change per optimizer step) or ``"epoch"`` (displacement
            over the epoch divided by its number of steps).

    Overhead: one flat copy of the tracked parameters on their device; per step one
    concatenation, subtraction and square, then one reshaped sum per tracked tensor into the
    group sums (no loop over groups, no ``.item()``); nothing leaves the device until results
    are read.
    """

    def __init__(
        self,
        groups: dict[str, str] | None = None,
        window: int | None = None,
        snapshot: str = "epoch",
        downsample: int = 10,
        velocity: str = "step",
    ) -> None:
        if groups is not None:
            if not isinstance(groups, dict) or not groups:
                raise InputError(
                    f"groups must be a non-empty dict layer → kind, got {groups!r}: "
                    "e.g. {'conv1': 'filters'}"
                )
            for layer, kind in groups.items():
                if kind not in KINDS:
                    raise InputError(
                        f"unknown group kind {kind!r} for layer {layer!r}: use one of {KINDS}"
                    )
        if snapshot not in SNAPSHOTS:
            raise InputError(f"unknown snapshot {snapshot!r}: use 'epoch' or 'step'")
        if velocity not in VELOCITIES:
            raise InputError(f"unknown velocity {velocity!r}: use 'step' or 'epoch'")
        if not isinstance(downsample, int) or downsample < 1:
            raise InputError(f"downsample must be a positive integer, got {downsample!r}")
        if window is not None:
            _check_window(window)
        self.groups = dict(groups) if groups is not None else None
        self.window = window
        self.snapshot = snapshot
        self.downsample = downsample
        self.velocity = velocity
        self._layers: list[LayerGroups] = []
        self._reset_records()

    # ------------------------------------------------------------------ setup
    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Start tracking ``model`` (and record ``optimizer``'s settings); call before training.

        Re-attaching (e.g. after resuming from a checkpoint) keeps what was recorded and starts
        the next velocity from the current parameters.
        """
        groups = self.groups if self.groups is not None else _default_groups(model)
        if not groups:
            raise InputError(
                f"{type(model).__name__} has no Conv2d or Linear layer: pass groups explicitly"
            )
        self._layers = [resolve_layer(model, name, kind) for name, kind in groups.items()]
        self._layer_kinds = {lg.layer: lg.kind for lg in self._layers}
        if optimizer is not None:
            self.optimizer_info = optimizer_settings(optimizer)
        sizes = [lg.n_groups for lg in self._layers]
        self._slices = []
        start = 0
        for n in sizes:
            self._slices.append((start, start + n))
            start += n
        self._inv_size = torch.cat(
            [torch.full((lg.n_groups,), 1.0 / lg.group_size) for lg in self._layers]
        )
        device = self._layers[0].weight().device
        self._inv_size = self._inv_size.to(device)
        self._segs = self._segments()
        self._acc = torch.zeros(start, dtype=torch.float64, device=device)
        self._block = torch.zeros_like(self._acc)
        self._prev = self._flat_params()
        self._epoch_start = self._prev.clone() if self.velocity == "epoch" else None
        self._steps_open = 0
        self._block_steps = 0

    def _tensors(self) -> list[Tensor]:
        out = []
        for lg in self._layers:
            out.append(lg.weight().detach().reshape(-1))
            bias = lg.bias()
            if bias is not None:
                out.append(bias.detach().reshape(-1))
        return out

    def _flat_params(self) -> Tensor:
        """All tracked parameters as one flat vector (a new tensor)."""
        with torch.no_grad():
            return torch.cat(self._tensors())

    def _segments(self) -> list[tuple[int, int, int, int, int]]:
        """Per tracked tensor: (start, end) in the flat vector, reduce mode, rows, columns.

        Mode 0: one group per row (filters, neurons: rows × entries per row); mode 1: one group
        per column (features); mode 2: one group per entry (bias).
        """
        segments, start = [], 0
        for lg in self._layers:
            weight = lg.weight()
            n = weight.numel()
            mode = 1 if lg.kind == "features" else 0
            segments.append((start, start + n, mode, weight.shape[0], n // weight.shape[0]))
            start += n
            if lg.bias() is not None:
                segments.append((start, start + lg.n_groups, 2, lg.n_groups, 1))
                start += lg.n_groups
        return segments

    def _reset_records(self) -> None:
        self.optimizer_info: dict[str, Any] = {}
        self._epoch_sums: list[Tensor] = []
        self._epoch_steps: list[int] = []
        self._trace_steps: list[int] = []
        self._trace: list[Tensor] = []
        self._total_steps = 0

    # ------------------------------------------------------------------ per step
    def _energies(self, current: Tensor, reference: Tensor) -> Tensor:
        """Per-group Σ v² (not yet halved) of ``current − reference`` (flat vectors), float64."""
        with torch.no_grad():
            sq = torch.sub(current, reference).square_()
            parts: list[Tensor] = []
            for start, end, mode, rows, cols in self._segs:
                block = sq[start:end]
                if mode == 0:
                    parts.append(block.view(rows, cols).sum(dim=1))
                elif mode == 1:
                    parts.append(block.view(rows, cols).sum(dim=0))
                else:  # bias of the groups just appended
                    parts[-1] = parts[-1] + block
            return torch.cat(parts).to(torch.float64)

    def step(self) -> None:
        """Record one optimizer step; call right after ``optimizer.step()``."""
        if not self._layers:
            raise NotFittedError("TemperatureMonitor.step() before attach(model, optimizer)")
        self._steps_open += 1
        self._total_steps += 1
        if self.velocity == "epoch":
            return
        current = self._flat_params()
        energies = self._energies(current, self._prev)
        self._prev = current
        self._acc.add_(energies)
        if self.snapshot == "step":
            self._block.add_(energies)
            self._block_steps += 1
            if self._block_steps == self.downsample:
                self._trace.append(self._block * (0.5 / self.downsample) * self._inv_size)
                self._trace_steps.append(self._total_steps)
                self._block.zero_()
                self._block_steps = 0

    def end_epoch(self) -> None:
        """Close the current epoch (stores its mean temperature per group)."""
        if not self._layers:
            raise NotFittedError("TemperatureMonitor.end_epoch() before attach(model, optimizer)")
        if self._steps_open == 0:
            return
        if self.velocity == "epoch":
            current = self._flat_params()
            sums = self._energies(current, self._epoch_start) / float(self._steps_open) ** 2
            self._epoch_start = current
        else:
            sums = self._acc / self._steps_open
            self._acc.zero_()
        self._epoch_sums.append(sums * 0.5 * self._inv_size)
        self._epoch_steps.append(self._steps_open)
        self._steps_open = 0

    # ------------------------------------------------------------------ callback API
    def on_train_begin(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Callback hook: attach to the model being trained."""
        self.attach(model, optimizer)

    def on_batch_end(
        self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loss: Any
    ) -> None:
        """Callback hook: one optimizer step was taken."""
        self.step()

    def on_epoch_end(self, epoch: int, model: nn.Module, record: Any) -> None:
        """Callback hook: close the epoch."""
        self.end_epoch()

    # ------------------------------------------------------------------ results
    def history(self, include_open: bool = False) -> TemperatureHistory:
        """Everything recorded so far, as plain Python values.

        Args:
            include_open: also report the steps since the last ``end_epoch`` as one more
                epoch (``velocity="step"`` only); nothing is modified.
        """
        if not self._layers:
            raise NotFittedError("TemperatureMonitor has not been attached to a model")
        layers = {lg.layer: lg.kind for lg in self._layers}
        epoch_t: dict[str, list[list[float]]] = {lg.layer: [] for lg in self._layers}
        trace: dict[str, list[list[float]]] = {lg.layer: [] for lg in self._layers}
        sums, steps = list(self._epoch_sums), list(self._epoch_steps)
        if include_open and self._steps_open and self.velocity == "step":
            sums.append(self._acc / self._steps_open * 0.5 * self._inv_size)
            steps.append(self._steps_open)
        epochs = torch.stack(sums).cpu() if sums else None
        traced = torch.stack(self._trace).cpu() if self._trace else None
        for lg, (a, b) in zip(self._layers, self._slices, strict=True):
            if epochs is not None:
                epoch_t[lg.layer] = epochs[:, a:b].tolist()
            if traced is not None:
                trace[lg.layer] = traced[:, a:b].tolist()
        return TemperatureHistory(
            layers=layers,
            n_groups={lg.layer: lg.n_groups for lg in self._layers},
            group_size={lg.layer: lg.group_size for lg in self._layers},
            epoch_temperatures=epoch_t,
            steps_per_epoch=steps,
            trace_steps=list(self._trace_steps),
            trace=trace if self.snapshot == "step" else {},
            optimizer=dict(self.optimizer_info),
            velocity=self.velocity,
        )

    def temperatures(self, window: int | None = -1) -> dict[str, Tensor]:
        """Time-averaged temperature per group over the last ``window`` epochs.

        Args:
            window: number of last epochs; ``None`` = all; default = the monitor's ``window``.
                An open epoch (steps since the last ``end_epoch``) counts as one epoch.

        Returns:
            layer name → ``(n_groups,)`` float64 CPU tensor.
        """
        if window == -1:
            window = self.window
        return self.history(include_open=True).temperatures(window)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Records and settings (CPU tensors), for checkpoints and resume."""
        return {
            "settings": {
                "groups": self.groups,
                "window": self.window,
                "snapshot": self.snapshot,
                "downsample": self.downsample,
                "velocity": self.velocity,
            },
            "optimizer": dict(self.optimizer_info),
            "epoch_sums": [t.cpu() for t in self._epoch_sums],
            "epoch_steps": list(self._epoch_steps),
            "trace": [t.cpu() for t in self._trace],
            "trace_steps": list(self._trace_steps),
            "total_steps": self._total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore records saved by :meth:`state_dict` (call :meth:`attach` afterwards)."""
        try:
            settings = state["settings"]
            self.__init__(**settings)  # type: ignore[misc]
            self.optimizer_info = dict(state["optimizer"])
            self._epoch_sums = [torch.as_tensor(t) for t in state["epoch_sums"]]
            self._epoch_steps = list(state["epoch_steps"])
            self._trace = [torch.as_tensor(t) for t in state["trace"]]
            self._trace_steps = list(state["trace_steps"])
            self._total_steps = int(state["total_steps"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"temperature monitor state is missing or malformed ({exc!r}): "
                "pass the dict returned by TemperatureMonitor.state_dict()"
            ) from exc


def _default_groups(model: nn.Module) -> dict[str, str]:
    groups = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            groups[name] = "filters"
        elif isinstance(module, nn.Linear):
            groups[name] = "neurons"
    return groups


def _check_window(window: int) -> int:
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise InputError(f"window must be a positive number of epochs or None, got {window!r}")
    return window
