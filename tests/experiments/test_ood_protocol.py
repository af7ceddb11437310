"""The OOD protocol driver: the validation blur, the out sets, the training settings, and
resuming both training and scoring."""

import json

import numpy as np
import pytest
import torch

from leafscope.errors import InputError
from leafscope.experiments.ood_protocol import (
    LEAF_SCORES,
    PROTOCOL_BASELINES,
    TRAINING,
    blurred,
    held_out_accuracy,
    model_summary,
    out_sets,
    run_protocol,
    train_models,
)
from leafscope.training import load_checkpoint


def test_blur_keeps_constants_inside_and_mass_of_a_centred_dot():
    x = torch.full((1, 1, 20, 20), 0.5)
    b = blurred(x, sigma=1.0)
    assert b.shape == x.shape
    torch.testing.assert_close(b[..., 4:-4, 4:-4], x[..., 4:-4, 4:-4])  # far from the zero pad
    dot = torch.zeros(1, 1, 21, 21)
    dot[0, 0, 10, 10] = 1.0
    bd = blurred(dot, sigma=1.5)
    assert bd.sum().item() == pytest.approx(1.0, abs=1e-5)  # kernel sums to 1, no mass lost
    assert bd[0, 0, 10, 10] == bd.max() and bd[0, 0, 10, 11] == pytest.approx(bd[0, 0, 11, 10])
    with pytest.raises(InputError, match="sigma must be > 0"):
        blurred(x, 0)


def test_out_sets_skip_missing_files_with_a_note():
    sets, notes = out_sets("mnist", ["noise", "digits", "kmnist"], 7)
    assert sets["noise"].shape == (7, 1, 28, 28) and sets["digits"].shape == (7, 1, 28, 28)
    if "kmnist" not in sets:
        assert any(n.startswith("kmnist: skipped") for n in notes)


def test_training_settings_are_known():
    assert set(TRAINING) == {"converged", "partial"}
    assert TRAINING["converged"]["momentum"] > 0 and TRAINING["converged"]["lr_step"]
    with pytest.raises(InputError, match="unknown training settings"):
        train_models(["forever"], [0], "unused")


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two LeNets trained 2 steps each on MNIST (the 'partial' setting, capped)."""
    from leafscope.testing import shared_data_dir

    if shared_data_dir() is None:  # a clone without ../shared/data and no network
        pytest.skip("shared MNIST not present")
    runs = tmp_path_factory.mktemp("ood-runs")
    with _one_thread():
        ckpts = train_models(["partial"], [0, 1], runs, max_steps_per_epoch=2, val_points=50)
    return runs, ckpts["partial"]


class _one_thread:
    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


SMALL = {"out_names": ["noise"], "points": 12, "fit_points": 40, "leaf_steps": 1}
SMALL["leaf_scale_points"] = 4


def test_train_models_reuses_finished_runs_and_resumes_interrupted_ones(two_seeds, capsys):
    runs, (final0, final1) = two_seeds
    assert final0 == runs / "mnist-lenet-partial-s0" / "epoch_0001.pt" and final1.exists()
    summary = model_summary(final0)
    assert summary["epochs"] == 1 and summary["steps"] == 2
    assert summary["settings"]["max_steps_per_epoch"] == 2 and 0 <= summary["val_accuracy"] <= 1
    stamp = final0.stat().st_mtime_ns
    weights = {k: v.clone() for k, v in load_checkpoint(final1).state_dict().items()}
    final1.unlink()  # seed 1 interrupted after its initial checkpoint: resumed, not restarted
    with _one_thread():
        again = train_models(["partial"], [0, 1], runs, max_steps_per_epoch=2, val_points=50)
    assert again["partial"] == [final0, final1]
    assert final0.stat().st_mtime_ns == stamp  # finished: restored, not retrained
    out = capsys.readouterr().out
    assert "partial seed 0: reused" in out and "partial seed 1: trained" in out
    for k, v in load_checkpoint(final1).state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)  # the same run, exactly
    assert model_summary(runs / "nowhere.pt") == {"checkpoint": str(runs / "nowhere.pt")}


def test_held_out_accuracy_uses_the_runs_own_validation_split(two_seeds):
    from leafscope.data import load_images, train_val_split

    _, (_, final1) = two_seeds
    acc = held_out_accuracy(final1, batch_size=4096)
    assert acc["val_points_full"] == 6000 and acc["test_points"] == 10000
    train = load_images("mnist", "train")
    _, va = train_val_split(len(train), 0.1, 1)  # seed 1's split, not seed 0's
    model = load_checkpoint(final1).eval()
    with torch.no_grad():
        right = (model(train.images[va]).argmax(1) == train.labels[va]).double().mean()
    assert acc["val_accuracy_full"] == pytest.approx(float(right), abs=1e-12)


def _score_counter(monkeypatch):
    from leafscope.experiments import ood_protocol

    monkeypatch.setattr(  # the full-split accuracies have a test of their own
        ood_protocol, "held_out_accuracy", lambda path, **kw: {"test_accuracy": len(str(path))}
    )
    calls = []
    real = ood_protocol._score_model

    def counted(path, setting, seed, *rest):
        calls.append((setting, seed))
        return real(path, setting, seed, *rest)

    monkeypatch.setattr(ood_protocol, "_score_model", counted)
    return calls


def test_run_protocol_writes_after_each_model_and_resumes(two_seeds, tmp_path, monkeypatch):
    _, ckpts = two_seeds
    path = tmp_path / "p.json"
    calls = _score_counter(monkeypatch)
    with _one_thread():
        first = run_protocol({"partial": ckpts}, json_path=path, **SMALL)
    assert calls == [("partial", 0), ("partial", 1)] and first.complete
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(first.to_json()))
    names = list(PROTOCOL_BASELINES) + list(LEAF_SCORES)
    assert [r["detector"] for r in first.table] == names
    for row in first.table:  # the table is the seeds' mean and population std
        per = [r["auroc"] for r in first.per_model if r["detector"] == row["detector"]]
        assert row["auroc"] == pytest.approx(np.mean(per)) and row["n_seeds"] == 2
        assert row["auroc_std"] == pytest.approx(np.std(per))
    assert [m["seed"] for m in first.models] == [0, 1] and first.models[0]["score_seconds"] > 0
    # Interrupted after seed 0: the partial JSON keeps it, a rerun scores only seed 1.
    assert first.models[1]["test_accuracy"] == len(str(ckpts[1]))
    old_entry = {k: v for k, v in saved["models"][0].items() if k != "test_accuracy"}
    partial = dict(saved, complete=False, table=[], models=[old_entry])
    partial["per_model"] = [r for r in saved["per_model"] if r["seed"] == 0]
    partial["tuned_weights"] = saved["tuned_weights"][:1]
    path.write_text(json.dumps(partial))
    with _one_thread():
        second = run_protocol({"partial": ckpts}, json_path=path, **SMALL)
    assert calls[2:] == [("partial", 1)] and second.complete
    for a, b in zip(first.table, second.table, strict=True):
        assert {k: pytest.approx(v) for k, v in a.items()} == b
    assert json.loads(path.read_text())["models"][0] == saved["models"][0]
    third = run_protocol({"partial": ckpts}, json_path=path, **SMALL)
    assert len(calls) == 3 and third.per_model == second.per_model  # nothing left to score


def test_run_protocol_refuses_a_json_of_other_settings(two_seeds, tmp_path, monkeypatch):
    _, ckpts = two_seeds
    _score_counter(monkeypatch)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"note": "something else"}))
    with pytest.raises(InputError, match="not a protocol result"):
        run_protocol({"partial": ckpts[:1]}, json_path=path, **SMALL)
    path.unlink()
    with _one_thread():
        run_protocol({"partial": ckpts[:1]}, json_path=path, **SMALL)
    with pytest.raises(InputError, match=r"other settings \(leaf_steps, points\)"):
        run_protocol(
            {"partial": ckpts[:1]}, json_path=path, **{**SMALL, "points": 10, "leaf_steps": 2}
        )
    with pytest.raises(InputError, match="points and fit_points must be >= 2"):
        run_protocol({"partial": ckpts[:1]}, **{**SMALL, "points": 1})


def test_protocol_command_refuses_what_it_cannot_honour(capsys):
    from leafscope.cli.main import main

    for argv, message in (
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--regimes", "forever"], "--regimes: unknown ['forever']"),
        (["--checkpoint", "a.pt"], "unrecognized arguments"),  # it trains its own models
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) if argv[0] == "--checkpoint" else _no_raise():
            assert main(["ood-protocol", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_protocol_baselines_are_the_registry_baselines():
    from leafscope.applications.detectors import BASELINES, DETECTORS

    assert tuple(PROTOCOL_BASELINES) == BASELINES
    for name, (kind, options) in PROTOCOL_BASELINES.items():
        assert DETECTORS[name].cls.name == kind and dict(DETECTORS[name].options) == options
    assert PROTOCOL_BASELINES["mahalanobis-lw"] == ("mahalanobis", {"shrinkage": "ledoit-wolf"})
    assert PROTOCOL_BASELINES["knn"] == ("knn", {"k": 50})
