"""Spectral attacks (OSSA, TSSA) and the L2 baselines (FGSM, PGD): directions against a dense G,
signs, budgets and boxes; fooling rates on a LeNet trained for a few hundred MNIST steps; the
``attack`` task through the runner (rows, npz, slices + merge)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from leafscope.applications.attacks import (
    attack,
    fgsm,
    fgsm2,
    fisher_rao_distance,
    ossa,
    pgd,
    top_eigenvector,
    tssa,
)
from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.data.spec import DataSpec
from leafscope.errors import InputError
from leafscope.execution.runner import make_job, run
from leafscope.information import DataInformation
from leafscope.models import build_model
from leafscope.models.spec import ModelSpec
from leafscope.tasks.attack import AttackParams, fooling_table
from leafscope.testing import LinearSoftmax, shared_data_dir, tiny_cnn, tiny_mlp
from leafscope.training import fit

F64 = torch.float64
needs_mnist = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST not present")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _dense_top(model, x):
    g = DataInformation(model, x, dtype=F64).dense()
    _, vecs = torch.linalg.eigh(g)
    return vecs[..., -1]


def _cos(a, b):
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


# ------------------------------------------------------------------------ directions
def test_ossa_steps_along_the_top_eigenvector_of_the_dense_g():
    model = tiny_mlp(n_in=10, n_classes=4, activation="gelu").double()
    x = 0.3 + 0.4 * torch.rand(6, 10, generator=torch.Generator().manual_seed(0), dtype=F64)
    eps = 0.05  # small: no clipping in [0, 1]
    step = ossa(model, x, eps) - x
    assert torch.allclose(step.norm(dim=1), torch.full((6,), eps, dtype=F64))
    assert torch.allclose(_cos(step, _dense_top(model, x)).abs(), torch.ones(6, dtype=F64))
    assert torch.allclose(_cos(top_eigenvector(model, x), _dense_top(model, x)).abs(),
                          torch.ones(6, dtype=F64))  # fmt: skip


def test_ossa_direction_on_a_linear_softmax_model_in_closed_form():
    from leafscope.testing import closed_form_dim

    gen = torch.Generator().manual_seed(3)
    model = LinearSoftmax(torch.randn(5, 12, generator=gen), torch.randn(5, generator=gen)).double()
    x = 0.25 + 0.5 * torch.rand(4, 12, generator=gen, dtype=F64)
    top = torch.linalg.eigh(closed_form_dim(model, x))[1][..., -1]
    step = ossa(model, x, 0.02) - x
    assert torch.allclose(_cos(step, top).abs(), torch.ones(4, dtype=F64), atol=1e-12)


def test_ossa_takes_the_sign_that_raises_the_loss():
    model = tiny_mlp(n_in=10, n_classes=4, activation="tanh").double()
    x = 0.3 + 0.4 * torch.rand(8, 10, generator=torch.Generator().manual_seed(1), dtype=F64)
    labels = model(x).argmax(1)
    adv = ossa(model, x, 0.2)  # x in [0.3, 0.7]: no clipping
    other = x - (adv - x)
    loss = torch.nn.functional.cross_entropy
    assert bool(
        (
            loss(model(adv), labels, reduction="none")
            >= loss(model(other), labels, reduction="none")
        ).all()
    )


def test_tssa_second_step_follows_the_top_eigenvector_at_the_midpoint():
    model = tiny_mlp(n_in=10, n_classes=4, activation="gelu", seed=2).double()
    x = 0.3 + 0.4 * torch.rand(5, 10, generator=torch.Generator().manual_seed(2), dtype=F64)
    eps, ratio = 0.1, 0.6
    x1 = ossa(model, x, ratio * eps)
    adv = tssa(model, x, eps, ratio=ratio)
    second = adv - x1
    assert torch.allclose(second.norm(dim=1), torch.full((5,), (1 - ratio) * eps, dtype=F64))
    assert torch.allclose(_cos(second, _dense_top(model, x1)).abs(), torch.ones(5, dtype=F64))
    assert bool(((second * (x1 - x)).sum(1) >= 0).all())  # goes on the way of the first step
    assert torch.allclose(tssa(model, x, eps, ratio=1.0), ossa(model, x, eps))


def test_fgsm2_is_two_gradient_steps():
    model = tiny_mlp(n_in=10, n_classes=3, activation="tanh").double()
    x = 0.4 + 0.2 * torch.rand(3, 10, generator=torch.Generator().manual_seed(5), dtype=F64)
    labels = model(x).argmax(1)
    x1 = fgsm(model, x, 0.006, labels=labels)
    expected = fgsm(model, x1, 0.004, labels=labels)
    assert torch.allclose(fgsm2(model, x, 0.01, labels=labels), expected)


def test_attacks_stay_in_the_box_and_the_budget():
    model = tiny_cnn(n_classes=3, activation="relu", seed=0)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for method in ("ossa", "tssa", "fgsm", "fgsm2", "pgd"):
        out = attack(method, model, x, 1.5, seeds=list(range(6)))
        assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
        assert float(out.perturbation_norm.max()) <= 1.5 + 1e-9
        assert out.fooled.dtype == torch.bool and out.x_adv.shape == x.shape


def test_fgsm_is_the_normalised_gradient():
    model = tiny_mlp(n_in=10, n_classes=3, activation="tanh").double()
    x = 0.4 + 0.2 * torch.rand(3, 10, generator=torch.Generator().manual_seed(5), dtype=F64)
    labels = model(x).argmax(1)
    z = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(z), labels, reduction="sum").backward()
    step = fgsm(model, x, 0.01) - x
    assert torch.allclose(_cos(step, z.grad), torch.ones(3, dtype=F64))


def test_pgd_is_seeded_and_at_least_as_strong_as_its_start():
    model = tiny_mlp(n_in=10, n_classes=3, activation="tanh", seed=4).double()
    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(6), dtype=F64)
    a = pgd(model, x, 0.8, seeds=range(16))
    b = pgd(model, x, 0.8, seeds=range(16))
    assert torch.equal(a, b)
    assert float((a - x).norm(dim=1).max()) <= 0.8 + 1e-12


def test_fisher_rao_distance():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=F64)
    q = torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=F64)
    d = fisher_rao_distance(p, q)
    assert float(d[0]) == pytest.approx(0.0, abs=1e-7) and float(d[1]) == pytest.approx(math.pi)


def test_bad_inputs_are_refused():
    model = tiny_mlp(n_in=4, n_classes=3)
    x = torch.rand(2, 4)
    with pytest.raises(InputError, match="budget"):
        ossa(model, x, 0.0)
    with pytest.raises(InputError, match="ratio"):
        tssa(model, x, 1.0, ratio=0.0)
    with pytest.raises(InputError, match="unknown attack"):
        attack("cw", model, x, 1.0)
    with pytest.raises(InputError, match="methods"):
        AttackParams(methods=("ossa", "deepfool"))
    with pytest.raises(InputError, match="budgets"):
        AttackParams(budgets=(1.0, -1.0))


def test_fooling_table_means_over_seeds():
    layout = [("ossa", 1.0, 0), ("ossa", 1.0, 1), ("pgd", 1.0, 0), ("pgd", 1.0, 1)]
    fooled = np.array([[1, 1, 1, 0], [0, 0, 1, 1]])
    rows = fooling_table(fooled, layout)
    assert rows[0] == {"method": "ossa", "budget": 1.0, "fooling_rate": 0.5, "std": 0.0,
                       "per_seed": [0.5, 0.5], "points": 2}  # fmt: skip
    assert rows[1]["per_seed"] == [1.0, 0.5] and rows[1]["fooling_rate"] == 0.75


def test_paired_comparison_and_mcnemar():
    from leafscope.tasks.attack import mcnemar_p, paired_comparison

    layout = [("tssa", 1.0, 0), ("tssa", 1.0, 1), ("ossa", 1.0, 0), ("ossa", 1.0, 1)]
    fooled = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    (row,) = paired_comparison(fooled, layout, "tssa", "ossa")
    assert row == {"budget": 1.0, "tssa_only": 2, "ossa_only": 1, "both": 1, "neither": 1,
                   "mcnemar_p": 1.0}  # fmt: skip
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_p(0, 0) == 1.0


# ------------------------------------------------------------ a trained MNIST LeNet
@pytest.fixture(scope="module")
def mnist_lenet():
    if shared_data_dir() is None:
        pytest.skip("shared MNIST not present")
    train = load_images("mnist", "train", limit=8000, data_dir=shared_data_dir())
    test = load_images("mnist", "test", limit=64, data_dir=shared_data_dir())
    torch.manual_seed(0)
    model = build_model("lenet", activation="relu")
    fit(model, (train.images, train.labels), epochs=2, lr=0.05, momentum=0.9, batch_size=64,
        max_steps_per_epoch=150, seed=0, progress=False)  # fmt: skip
    model.eval()
    return model, test


@needs_mnist
def test_fooling_rates_do_not_fall_with_the_budget_on_a_trained_lenet(mnist_lenet):
    model, test = mnist_lenet
    x = test.images
    accuracy = float((model(x).argmax(1) == test.labels).double().mean())
    assert accuracy > 0.85
    budgets = (0.5, 1.0, 2.0, 4.0)
    for method in ("ossa", "pgd"):
        rates = [float(attack(method, model, x, b, seeds=range(64)).fooled.double().mean())
                 for b in budgets]  # fmt: skip
        assert all(b >= a for a, b in zip(rates[:-1], rates[1:], strict=True)), (method, rates)
        assert rates[-1] > 0.5
    pgd_rate = float(attack("pgd", model, x, 1.0, seeds=range(64)).fooled.double().mean())
    fgsm_rate = float(attack("fgsm", model, x, 1.0).fooled.double().mean())
    assert pgd_rate >= fgsm_rate


@needs_mnist
def test_our_pgd_against_torchattacks(mnist_lenet):
    torchattacks = pytest.importorskip("torchattacks")
    model, test = mnist_lenet
    x = test.images
    labels = model(x).argmax(1)
    peer = torchattacks.PGDL2(model, eps=1.0, alpha=0.25, steps=20, random_start=True)
    torch.manual_seed(0)
    theirs = float((model(peer(x, labels)).argmax(1) != labels).double().mean())
    ours = float(attack("pgd", model, x, 1.0, dtype=torch.float32, seeds=range(64)).fooled
                 .double().mean())  # fmt: skip
    assert ours >= theirs - 0.1  # same algorithm; ours keeps the first fooling iterate


# --------------------------------------------------------------------------- the task
FACTORY = "leafscope.testing:tiny_cnn"
FACTORY_ARGS = '{"activation": "relu", "n_classes": 10}'
COMMON = ["--model", FACTORY, "--model-args", FACTORY_ARGS, "--dataset", "digits", "--resize",
          "8,8", "--points", "6", "--budgets", "0.5,2", "--seeds", "2", "--pgd-steps", "5",
          "--device", "cpu", "--no-progress"]  # fmt: skip


def test_task_rows_npz_and_json(tmp_path, capsys):
    out, doc = tmp_path / "att", tmp_path / "a.json"
    assert main(["attack", *COMMON, "--out", str(out), "--json", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "tssa budget=2 fooling_rate=" in printed
    data = json.loads(doc.read_text())
    rows = data["rows"]
    assert {(r["method"], r["budget"]) for r in rows} == {
        (m, b) for m in ("ossa", "tssa", "fgsm", "pgd") for b in (0.5, 2.0)
    }
    for r in rows:
        assert set(r) >= {"method", "budget", "fooling_rate"} and 0 <= r["fooling_rate"] <= 1
        if r["method"] != "pgd":
            assert r["std"] == 0.0  # deterministic attacks: the same for every seed
    z = np.load(out / "_files" / "adversarial.npz")
    assert z["images"].shape == (8 * 6, 1, 8, 8)
    assert set(z["method"]) == {"ossa", "tssa", "fgsm", "pgd"} and set(z["budget"]) == {0.5, 2.0}
    assert (out / "_files" / "fooling_rate.png").stat().st_size > 0
    # the npz images are the attacks of the library on the same points
    data_set = load_images("digits", "test", resize="8,8")
    model = tiny_cnn(activation="relu", n_classes=10)
    pick = (z["method"] == "ossa") & (z["budget"] == 2.0)
    x = data_set.images[torch.as_tensor(z["index"][pick])]
    expected = attack("ossa", model, x, 2.0).x_adv.float().numpy()
    assert np.allclose(z["images"][pick], expected, atol=1e-6)


def test_task_slices_and_merge_equal_one_run(tmp_path, capsys):
    params = AttackParams(budgets=(0.5, 2.0), seeds=2, pgd_steps=5, keep_images=False)
    spec = ModelSpec(factory=FACTORY, factory_kwargs=FACTORY_ARGS)
    data = DataSpec(name="digits", resize="8,8")
    one = run(make_job("attack", params, model=spec, data=data, points=6))
    sliced = tmp_path / "sliced"
    extra = ["--keep-images", "--no-keep-images"]
    for part in ("1/2", "2/2"):
        argv = ["attack", *COMMON, "--shard", part, "--shard-size", "3", "--out", str(sliced)]
        assert main([a for a in argv if a not in extra] + ["--no-keep-images"]) == 0
    assert main(["merge", str(sliced)]) == 0
    capsys.readouterr()
    merged = json.loads((sliced / "_summary.json").read_text())["summary"]["fooling_rates"]
    whole = one.payload["summary"]["fooling_rates"]
    for a, b in zip(merged, whole, strict=True):  # the attacks are per point: the same verdicts
        assert {k: a[k] for k in ("method", "budget", "fooling_rate", "per_seed")} == {
            k: b[k] for k in ("method", "budget", "fooling_rate", "per_seed")
        }
        assert a["mean_perturbation_norm"] == pytest.approx(b["mean_perturbation_norm"], 1e-9)
