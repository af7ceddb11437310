"""The LeNet / GNN pruning experiments, the figures and the CLI on tiny inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from matplotlib.figure import Figure
from torch_geometric.data import Data

from leafscope.errors import InputError
from leafscope.experiments.thermo import run_gnn_experiment, run_lenet_experiment
from leafscope.experiments.thermo.lenet import MAIN_CONDITIONS
from leafscope.report.figures import thermo as figures
from leafscope.testing import shared_data_dir
from leafscope.thermo.monitor import TemperatureHistory


def _tiny_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = torch.rand(n, 1, 28, 28, generator=gen) * 0.2
    for c in range(10):  # a bright bar whose position encodes the class
        x[y == c, 0, 2 * c + 2 : 2 * c + 5, :] += 0.8
    return x, y


def _toy_graph(seed: int = 0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    n, f, c = 90, 24, 3
    y = torch.arange(n) % c
    x = (torch.rand(n, f, generator=gen) < 0.1).float()
    x[torch.arange(n), y] = 1.0  # features 0..2 carry the class
    src = torch.randint(0, n, (300,), generator=gen)
    dst = torch.where(torch.rand(300, generator=gen) < 0.8, src - src % c + y[src], src)
    dst = (dst + c * torch.randint(0, 3, (300,), generator=gen)) % n
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1).unique(dim=1)
    masks = {name: torch.zeros(n, dtype=torch.bool) for name in ("train", "val", "test")}
    masks["train"][:30], masks["val"][30:45], masks["test"][45:] = True, True, True
    return Data(
        x=x,
        y=y,
        edge_index=edge_index,
        train_mask=masks["train"],
        val_mask=masks["val"],
        test_mask=masks["test"],
    )


@pytest.fixture(scope="module")
def lenet_result():
    data = (_tiny_images(320, 0), _tiny_images(64, 1), _tiny_images(200, 2))
    return run_lenet_experiment(2, epochs=2, batch_size=32, lr=0.05, momentum=0.9, data=data)


def test_lenet_table_has_the_contract_rows_and_consistent_statistics(lenet_result):
    result = lenet_result
    names = [r.condition for r in result.rows]
    assert names[:5] == MAIN_CONDITIONS
    assert {"without_2_random", "without_2_largest_l1", "only_3_smallest_taylor"} <= set(names)
    for row in result.rows:
        t = torch.tensor(row.accuracies, dtype=torch.float64)
        assert row.accuracy_mean == pytest.approx(float(t.mean()))
        assert row.accuracy_std == pytest.approx(float(t.std(unbiased=True)))
        assert 0.0 <= row.accuracy_mean <= 100.0
    # the main temperature is the per-step velocity over the last epoch: same rows as that variant
    variant = {r.condition: r for r in result.variants["step_velocity/last_epoch"]}
    for name in MAIN_CONDITIONS[1:]:
        assert variant[name].accuracies == result.row(name).accuracies
    out = json.loads(json.dumps(result.to_json()))
    assert set(out["rows"][0]) >= {
        "condition",
        "accuracy_mean",
        "accuracy_std",
        "loss_mean",
        "loss_std",
    }
    hist = TemperatureHistory.from_json(out["per_seed"][0]["monitor"])
    assert len(hist.steps_per_epoch) == 2 and hist.n_groups["conv1"] == 6
    assert isinstance(figures.figure_for(result), Figure)
    assert isinstance(figures.temperature_over_training(hist), Figure)


def test_gnn_curves_coincide_at_0_and_100_percent():
    result = run_gnn_experiment(
        "toy", "node", seeds=2, epochs=30, ratios=[0, 50, 100], data=_toy_graph()
    )
    assert {p.criterion for p in result.curves} == {"cold", "hot", "random", "magnitude", "rarest"}
    zero = {p.criterion: p.values for p in result.curves if p.ratio == 0}
    full = {p.criterion: p.values for p in result.curves if p.ratio == 100}
    before = [s["metric_before_pruning"] for s in result.per_seed]
    assert all(v == before for v in zero.values())
    assert len({tuple(v) for v in full.values()}) == 1  # every feature removed: same model
    assert isinstance(figures.figure_for(result), Figure)


def test_gnn_link_prediction_reports_auroc():
    result = run_gnn_experiment(
        "toy", "link", seeds=1, epochs=20, ratios=[0, 50], data=_toy_graph()
    )
    assert result.metric == "auroc"
    assert all(0.0 <= p.metric_mean <= 100.0 for p in result.curves)


def test_experiment_bad_inputs():
    with pytest.raises(InputError, match="seeds"):
        run_lenet_experiment(0)
    with pytest.raises(InputError, match="task"):
        run_gnn_experiment("cora", "graph", data=_toy_graph())
    with pytest.raises(InputError, match="ratios"):
        run_gnn_experiment("cora", "node", ratios=[120], data=_toy_graph())


def test_cli_gnn_alias_on_cora_writes_the_curves(tmp_path):
    """``leafscope thermo gnn`` (the alias of ``thermo-gnn``): the curves, as fractions."""
    from leafscope.cli.main import main

    data_dir = shared_data_dir()
    if data_dir is None or not (data_dir / "planetoid").is_dir():
        pytest.skip("shared Planetoid files not present")
    out = tmp_path / "cora.json"
    code = main(
        [
            "thermo",
            "gnn",
            "--dataset",
            "cora",
            "--seeds",
            "1",
            "--epochs",
            "5",
            "--ratios",
            "0,50",
            "--json",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--data-dir",
            str(data_dir / "planetoid"),
        ]
    )
    assert code == 0
    document = json.loads(out.read_text())
    curves = document["curves"]
    assert {"criterion", "ratio", "metric_mean", "metric_std"} <= set(curves[0])
    assert len(curves) == 10 and all(0 <= c["metric_mean"] <= 1 for c in curves)
    assert document["task"] == "thermo-gnn"


def test_cli_errors_are_clear(capsys):
    from leafscope.cli.main import main

    assert main(["thermo", "lenet", "--window", "x"]) == 2
    assert "--window must be an integer (got 'x')" in capsys.readouterr().err
    assert main(["thermo"]) == 2
    assert "needs an experiment" in capsys.readouterr().err


def test_spearman_matches_the_textbook_value_with_ties():
    from leafscope.experiments.thermo.common import spearman

    a = torch.tensor([3.0, 1, 2, 2, 5, 0])
    # Pearson of ranks (5,2,3.5,3.5,6,1) and (1..6): -4 / sqrt(17 * 17.5)
    assert spearman(a, torch.arange(6.0)) == pytest.approx(-4.0 / (17 * 17.5) ** 0.5)
    assert spearman(torch.arange(5.0), torch.arange(5.0) ** 3) == pytest.approx(1.0)
    assert math.isnan(spearman(torch.ones(4), torch.arange(4.0)))
