"""``leafscope nnk`` on a tiny LeNet run trained on 512 MNIST images."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from leafscope.cli import nnk as nnk_cli
from leafscope.errors import InputError
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="leafscope")
    nnk_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["nnk", *argv, "--device", "cpu", "--data-dir", str(DATA)])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from leafscope.data import load_images
    from leafscope.models import build_model
    from leafscope.training import fit

    run = tmp_path_factory.mktemp("run")
    data = load_images("mnist", "train", data_dir=DATA, limit=512, download=False)
    torch.manual_seed(0)
    fit(build_model("lenet"), data, epochs=2, lr=0.05, momentum=0.9, out_dir=run, progress=False,
        checkpoint_every_steps=4)  # fmt: skip
    return run


def test_cli_writes_per_layer_summaries(tiny_run, tmp_path, capsys):
    out = tmp_path / "nnk.json"
    args = _parse("--run", str(tiny_run), "--layers", "conv1,fc1", "--points", "120",
                  "--test-points", "300", "--k", "10", "--json", str(out),
                  "--figures", str(tmp_path / "fig"))  # fmt: skip
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert data["loo_layer"] == "act4" and data["n_points"] == 120
    assert data["pearson_loo_vs_test"] is None  # two epochs only
    for epoch in data["epochs"]:
        assert 0 <= epoch["loo_error"] <= 1 and 0 <= epoch["test_error"] <= 1
        for layer in ("conv1", "fc1"):
            s = epoch["layers"][layer]
            assert sum(s["n_neighbors"]["hist"]["counts"]) == 120
            assert 1 <= s["n_neighbors"]["mean"] <= 10
    for name in ("mgm_distributions.png", "mgm_epochs.png", "loo_vs_test.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    assert "Pearson" in capsys.readouterr().out


def test_cli_step_checkpoints(tiny_run, tmp_path, capsys):
    out = tmp_path / "nnk.json"
    args = _parse("--run", str(tiny_run), "--layers", "fc1", "--points", "60",
                  "--test-points", "100", "--k", "8", "--no-orientation",
                  "--step-checkpoints", "--json", str(out))  # fmt: skip
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    # 8 steps per epoch, a step checkpoint every 4: steps 4 and 12 join the two epoch ends
    assert [e["step"] for e in data["epochs"]] == [4, 8, 12, 16]
    assert data["pearson_loo_vs_test"] is not None
    assert "4 checkpoints" in capsys.readouterr().out


def test_cli_bad_layer_lists_valid_names(tiny_run, tmp_path):
    args = _parse("--run", str(tiny_run), "--layers", "conv1,conv9", "--json", str(tmp_path / "x"))
    with pytest.raises(InputError, match=r"conv9.*valid names are conv1, act1"):
        args.func(args)
    args = _parse("--run", str(tiny_run), "--layers", "fc1", "--points", "2", "--json", "x.json")
    with pytest.raises(InputError, match="--points"):
        args.func(args)


@pytest.mark.slow  # two worker processes importing torch: ~35 s on a busy 2-core machine
def test_cli_on_two_dask_worker_processes_equals_in_process(tiny_run, tmp_path):
    """One task per (checkpoint, layer) on a real two-process cluster on 127.0.0.1: the
    workers load the checkpoints and the data themselves, and the JSON equals the in-process
    one (the workers run one torch thread each, so does this comparison)."""
    pytest.importorskip("distributed")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outs = []
        for extra in ([], ["--executor", "dask", "--workers", "2"]):
            out = tmp_path / f"nnk{len(extra)}.json"
            args = _parse("--run", str(tiny_run), "--layers", "conv1,fc1", "--points", "40",
                          "--test-points", "40", "--k", "5", "--no-orientation", "--json",
                          str(out), *extra)  # fmt: skip
            assert args.func(args) == 0
            outs.append(json.loads(out.read_text()))
    finally:
        torch.set_num_threads(before)
    assert outs[0] == outs[1] and len(outs[0]["epochs"]) == 2
