"""The executor flags beyond ``spectrum``: ``leafscope ood`` scores its models as one task each,
and Dask workers give the in-process table."""

from __future__ import annotations

import json

import pytest
import torch

from leafscope.cli.main import main
from leafscope.models import build_model
from leafscope.training import save_checkpoint

pytest.importorskip("distributed")


def test_ood_models_on_dask_workers_equal_in_process(tmp_path):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(tmp_path / f"s{seed}.pt", model=build_model("lenet"),
                                     epoch=0, step=0, history=[]))  # fmt: skip
    argv = ["ood", "--checkpoints", ",".join(map(str, paths)), "--in", "digits", "--ood",
            "noise", "--detectors", "msp,energy", "--points", "20", "--fit-points", "40",
            "--device", "cpu", "--shard-size", "1", "--no-progress"]  # fmt: skip
    assert main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    dask = ["--executor", "dask", "--workers", "2", "--json", str(tmp_path / "b.json")]
    assert main([*argv, *dask]) == 0
    a, b = (json.loads((tmp_path / f).read_text())["summary"] for f in ("a.json", "b.json"))
    assert [r["n_seeds"] for r in a["results"]] == [2, 2]
    assert any(r["auroc_std"] > 0 for r in a["results"])  # two different models
    for ra, rb in zip(a["per_model"], b["per_model"], strict=True):
        assert ra["detector"] == rb["detector"]
        assert ra["auroc"] == pytest.approx(rb["auroc"], abs=1e-12)


def test_executor_flags_are_checked(capsys):
    assert main(["spectrum", "--checkpoint", "x.pt", "--workers", "2"]) == 2
    assert "--workers 2 needs --executor dask" in capsys.readouterr().err
