"""Adversarial detection: LID on data of known dimension, tuning on held-out attacks only, the
spectral scores against the information matrix, and the ``adversarial`` task on a small MLP
trained on scikit-learn's digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leafscope.applications.adversarial import lid_scores, spectral_scores, tuned_auroc
from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.errors import InputError
from leafscope.information import DataInformation
from leafscope.models import build_model
from leafscope.tasks.adversarial import AdversarialParams
from leafscope.testing import LinearSoftmax, tiny_mlp
from leafscope.training import fit, save_checkpoint

pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_lid_recovers_the_dimension_of_a_flat_cube():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(12, 3, generator=gen, dtype=torch.float64))[0]
    reference = torch.rand(3000, 3, generator=gen, dtype=torch.float64) @ basis.T
    queries = (0.25 + 0.5 * torch.rand(40, 3, generator=gen, dtype=torch.float64)) @ basis.T
    lid = lid_scores(queries, reference, (20, 40))
    assert abs(float(np.median(lid[:, 1])) - 3.0) < 0.5
    with pytest.raises(InputError):
        lid_scores(queries, reference, (1,))


def test_tuning_uses_only_the_held_out_attack():
    rng = np.random.default_rng(0)
    clean = {"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)}
    # on the held-out attack, "b" separates best and downward; on the evaluated one "a" would
    tune = {"a": rng.normal(0.2, 1, 300), "b": rng.normal(-3, 1, 300)}
    evaluate = {"a": rng.normal(4, 1, 300), "b": rng.normal(-0.5, 1, 300)}
    (score,) = tuned_auroc(clean, tune, evaluate, {"family": ["a", "b"]})
    assert score.variant == "b" and score.sign == -1
    assert score.tune_auroc > 0.95 and 0.55 < score.auroc < 0.75  # not the 0.99 of "a"


def test_spectral_scores_are_those_of_the_information_matrix():
    model = tiny_mlp(n_in=10, n_classes=4, activation="tanh")
    x = torch.rand(5, 10, generator=torch.Generator().manual_seed(1))
    scores = spectral_scores(model, x)
    info = DataInformation(model, x, dtype=torch.float64)
    assert np.allclose(scores["lambda1"], info.eigenvalues()[:, 0].numpy())
    assert np.allclose(scores["trace"], info.trace().numpy())
    assert np.allclose(scores["msp"], 1 - info.probs.max(1).values.numpy())
    assert (scores["turning"] > 0).all()
    # two classes, linear logits: D is one fixed line, so v1 never turns
    gen = torch.Generator().manual_seed(2)
    linear = LinearSoftmax(torch.randn(2, 10, generator=gen), torch.randn(2, generator=gen))
    assert np.abs(spectral_scores(linear, x)["turning"]).max() < 1e-6


def test_parameters_are_checked():
    with pytest.raises(InputError, match="two different attacks"):
        AdversarialParams(attacks=("pgd",))
    with pytest.raises(InputError, match="lid_k"):
        AdversarialParams(reference=10, lid_k=(20,))


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    train = load_images("digits", "train", resize="8,8")
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(32,), num_classes=10, image_size=8)
    fit(model, (train.images, train.labels), epochs=20, lr=0.1, momentum=0.9, batch_size=64,
        seed=0, progress=False)  # fmt: skip
    path = tmp_path_factory.mktemp("adv") / "epoch_0020.pt"
    return save_checkpoint(path, model=model.eval(), epoch=20, step=1, history=[])


def test_task_detects_attacks_on_a_trained_mlp(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "adv.json"
    argv = ["adversarial", "--checkpoint", str(digits_checkpoint), "--dataset", "digits",
            "--resize", "8,8", "--points", "60", "--reference", "300", "--seeds", "2",
            "--pgd-steps", "10", "--budget", "2", "--attacks", "pgd,ossa", "--json", str(out),
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lambda1 AUROC=" in printed
    summary = json.loads(out.read_text())["summary"]
    assert summary["clean_correct"] >= 50
    rows = summary["detection"]
    found = {(r["attack"], r["detector"]) for r in rows}
    detectors = {"lambda1", "trace", "turning", "msp", "lid", "mahalanobis"}
    assert found == {(a, d) for a in ("pgd", "ossa") for d in detectors}
    for r in rows:
        assert 0.0 <= r["auroc"] <= 1.0 and len(r["per_seed"]) == 2
    best = max(r["auroc"] for r in rows if r["attack"] == "pgd")
    assert best > 0.7  # something separates attacked points on a 97% model
