"""The per-unit jobs on the executor layer: NNK geometry per (checkpoint, layer), thermodynamic
pruning per seed (LeNet, filters, GCN), early stopping per seed and ``leafscope transfer`` per
data set give the same numbers in process and on a threaded Dask cluster (two workers, so
seeded sections really run side by side), and their task descriptions pickle."""

from __future__ import annotations

import json
import pickle
from functools import partial

import pytest
import torch

from leafscope.execution import DaskExecutor, InProcessExecutor, clear_cache
from leafscope.experiments.nnk import (
    GeometryTask,
    StoppingTask,
    early_stopping_seeds,
    geometry_unit,
    run_geometry,
    stopping_unit,
)
from leafscope.experiments.tasks import Source, resolve
from leafscope.experiments.thermo.filters import FilterSeedTask, filter_seed, run_filter_experiment
from leafscope.experiments.thermo.gnn import GnnSeedTask, gnn_seed, run_gnn_experiment
from leafscope.experiments.thermo.lenet import LenetSeedTask, lenet_seed, run_lenet_experiment
from leafscope.models import build_model, build_model_for_input
from leafscope.models.features import layer_features
from leafscope.nnk.geometry import mgm_summary
from leafscope.testing.threads import one_torch_thread
from leafscope.training import fit, load_checkpoint, save_checkpoint

pytest.importorskip("distributed")
_one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def dask():
    with DaskExecutor(2, processes=False) as ex:
        yield ex


def _numbers(value):
    """``value`` without the wall-clock ``seconds`` of the training histories."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    return value


def _same(a, b) -> bool:
    """Equal to the last bit (NaN equal to NaN): the JSON texts match, timings left out."""
    a, b = (json.dumps(_numbers(v), sort_keys=True, default=str) for v in (a, b))
    return a == b


def bars(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 1, size, size)`` whose bright bar row encodes one of 3 classes (a source)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, size, size, generator=gen) * 0.2
    for c in range(3):
        x[y == c, 0, 4 * c + 2 : 4 * c + 6, :] += 0.8
    return x, y


def three_sets(n: int) -> tuple:
    """``(train, val, test)`` pairs of :func:`bars` (a top-level data source)."""
    return bars(n, 0), bars(n // 2, 1), bars(n // 2, 2)


def test_nnk_geometry_per_checkpoint_and_layer(tmp_path, dask):
    torch.manual_seed(0)
    x, y = bars(60, 0)
    model = build_model("mlp", hidden=(16, 12), num_classes=3)
    fit(model, (x, y), epochs=2, lr=0.05, out_dir=tmp_path, progress=False)
    src = Source(bars, (40, 3))
    args = (src.part(0), src.part(1), ["fc1", "fc2"])
    kwargs = dict(k=6, test_images=x[40:], test_labels=y[40:], orientation=False)
    a = run_geometry(tmp_path, *args, **kwargs, executor=InProcessExecutor()).to_json()
    clear_cache()  # the cluster's tasks load the source and checkpoints again
    b = run_geometry(tmp_path, *args, **kwargs, executor=dask).to_json()
    assert _same(a, b) and [e["epoch"] for e in a["epochs"]] == [1, 2]
    # one unit is the layer's MGMs of that checkpoint's features
    with torch.no_grad():
        last = load_checkpoint(tmp_path / "epoch_0002.pt")
        feats = layer_features(last, resolve(src.part(0)), ["fc2"])["fc2"]
    assert _same(a["epochs"][1]["layers"]["fc2"], mgm_summary(feats, 6, "cosine", False))


def test_thermo_lenet_seeds(dask):
    data = Source(three_sets, (96,))
    run = partial(run_lenet_experiment, 2, epochs=1, batch_size=32, lr=0.05, data=data)
    a, b = run(executor=InProcessExecutor()), run(executor=dask)
    assert _same(a.to_json(), b.to_json())
    assert [s["seed"] for s in b.per_seed] == [0, 1]
    accs = a.row("original").accuracies
    assert a.row("original").accuracy_mean == pytest.approx(sum(accs) / 2, abs=1e-12)


def test_thermo_filters_seeds(dask):
    make = partial(build_model_for_input, "lenet", (1, 28, 28), 3)
    sets = Source(three_sets, (90,))
    run = partial(run_filter_experiment, make, sets.part(0), sets.part(1), sets.part(2),
                  layer="conv1", seeds=2, k=2, epochs=1, lr=0.05, batch_size=30)  # fmt: skip
    a, b = run(executor=InProcessExecutor()), run(executor=dask)
    assert _same(a.to_json(), b.to_json()) and len(a.temperatures) == 2
    assert a.temperatures[0] != a.temperatures[1]  # two seeds, two trainings


def toy_graph(n: int = 60, f: int = 12):
    """A small labelled graph for the GCN (a top-level data source)."""
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = (torch.rand(n, f, generator=gen) < 0.15).float()
    x[torch.arange(n), y] = 1.0
    src = torch.randint(0, n, (200,), generator=gen)
    dst = (src + 3 * torch.randint(1, 4, (200,), generator=gen)) % n
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][:20], masks[1][20:30], masks[2][30:] = True, True, True
    return Data(x=x, y=y, edge_index=edge_index.unique(dim=1), train_mask=masks[0],
                val_mask=masks[1], test_mask=masks[2])  # fmt: skip


@pytest.mark.parametrize("task", ["node", "link"])
def test_thermo_gnn_seeds(dask, task):
    pytest.importorskip("torch_geometric")
    run = partial(run_gnn_experiment, "toy", task, seeds=2, epochs=8, ratios=[0, 50],
                  data=Source(toy_graph))  # fmt: skip
    a, b = run(executor=InProcessExecutor()), run(executor=dask)
    assert _same(a.to_json(), b.to_json())
    zero = [p.values for p in a.curves if p.ratio == 0]
    assert all(v == [s["metric_before_pruning"] for s in a.per_seed] for v in zero)


def test_early_stopping_seeds(tmp_path, dask):
    make = partial(build_model_for_input, "lenet", (1, 28, 28), 3)
    data = Source(three_sets, (80,))
    options = dict(layer="conv2", points=20, epochs=2, patience=1, k=5, lr=0.05, batch_size=20)
    a = early_stopping_seeds(data, tmp_path / "a", seeds=[3, 4], model=make,
                             executor=InProcessExecutor(), **options)  # fmt: skip
    b = early_stopping_seeds(data, tmp_path / "b", seeds=[3, 4], model=make, executor=dask,
                             **options)  # fmt: skip
    assert _same(a, b) and a["seeds"] == [3, 4]
    assert (tmp_path / "b" / "seed4" / "cw").is_dir()
    acc = a["summary"]["cw_test_accuracy"]
    assert acc["values"] == [r["cw_deepnnk"]["test_accuracy"] for r in a["per_seed"]]
    assert acc["std"] == pytest.approx(abs(acc["values"][0] - acc["values"][1]) / 2**0.5)


def test_transfer_per_data_set(tmp_path, dask):
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.transfer import TransferParams

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", model=build_model("lenet"), epoch=0, step=0,
                           history=[])  # fmt: skip
    params = TransferParams(datasets=("digits", "noise"), points=6, transfer_train=60,
                            transfer_val=30)  # fmt: skip
    job = make_job("transfer", params, model=ModelSpec(checkpoint=str(path)),
                   data=DataSpec(name="digits"), shard_size=1)  # fmt: skip
    options = RunOptions(device="cpu", progress=False)
    a = run(job, options).payload
    clear_cache()
    b = run(job, options, executor=dask).payload  # one shard per data set on the workers
    assert _same(a, b) and [r["dataset"] for r in a["summary"]["rows"]] == ["digits", "noise"]
    assert a["num_shards"] == 3  # two data sets and the reference spectrum
    assert a["summary"]["rows"][1]["transfer_accuracy"] is None  # noise: unlabelled


def test_task_functions_and_items_pickle(tmp_path):
    src = Source(three_sets, (10,))
    make = partial(build_model_for_input, "lenet", (1, 28, 28), 3)
    items = [
        (geometry_unit, GeometryTask(str(tmp_path / "e.pt"), "fc1", src.part(0), src.part(1),
                                     None, None, 5, "cosine", True, None, None, "cpu")),
        (lenet_seed, LenetSeedTask(0, src.part(0), src.part(1), src.part(2), (("lr", 0.1),),
                                   "step", 1, 2, "cpu")),
        (filter_seed, FilterSeedTask(1, make, "conv1", 2, src.part(0), None, src.part(2), None,
                                     (("epochs", 1),), "cpu")),
        (gnn_seed, GnnSeedTask("node", Source(toy_graph), 0, 5, 0.01, 0.0, (0.0, 50.0), "cpu")),
        (stopping_unit, StoppingTask(0, src, str(tmp_path), make, (("k", 5),))),
    ]  # fmt: skip
    for fn, item in items:
        text = pickle.dumps((fn, item))
        fn2, item2 = pickle.loads(text)
        assert fn2 is fn and type(item2) is type(item) and pickle.dumps((fn2, item2)) == text
        assert len(text) < 2000  # specs and seeds, never tensors
