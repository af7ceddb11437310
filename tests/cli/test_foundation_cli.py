"""Hugging Face classifiers through `leafscope spectrum` (issue 19): a tiny ViT by folder on an
RGB .npz, a tiny BERT by folder on a .csv of texts, against dense routes; bfloat16 against
float64; the Hutchinson trace; slices + merge of a text job; image-only commands refuse texts."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from leafscope.cli.main import main  # noqa: E402

pytest.importorskip("transformers", reason="needs transformers: pip install 'leafscope[hf]'")

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
TEXTS = [
    "the cat sat on the mat",
    "a very good movie",
    "the dog was not bad",
    "terrible plot but great acting",
    "it was a film",
    "loved it",
    "hated the acting",
    "the plot is very good and the film is great",
]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    from leafscope.testing.hub import save_tiny_vit

    root = tmp_path_factory.mktemp("vit")
    folder = save_tiny_vit(root / "vit", mean=MEAN, std=STD)
    rng = np.random.default_rng(0)
    data = root / "RGB.npz"
    np.savez(
        data,
        x_train=rng.random((6, 32, 32, 3), dtype=np.float32),
        y_train=np.arange(6) % 3,
        x_test=rng.random((8, 32, 32, 3), dtype=np.float32),
        y_test=np.arange(8) % 4,
    )
    return folder, data


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from leafscope.testing.hub import save_tiny_bert

    root = tmp_path_factory.mktemp("bert")
    folder = save_tiny_bert(root / "bert", num_labels=4)
    data = root / "texts.csv"
    data.write_text(
        "text,label\n" + "".join(f"{t},{i % 4}\n" for i, t in enumerate(TEXTS)), encoding="utf-8"
    )
    return folder, data


def dense_top(f, x: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest eigenvalues of G = Jᵀ(diag p − ppᵀ)J at one point from the dense Jacobian
    (torch.autograd.functional.jacobian), via the C×C matrix M½ J Jᵀ M½, float64."""
    logits = f(x)
    p = torch.softmax(logits, dim=0)
    jac = torch.autograd.functional.jacobian(f, x).reshape(logits.shape[0], -1)
    w, v = torch.linalg.eigh(torch.diag(p) - torch.outer(p, p))
    root = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    return torch.linalg.eigvalsh(root @ jac @ jac.T @ root).flip(0)[:k].detach()


def _spectrum(tmp_path, name: str, *argv: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert main(["spectrum", *argv, "--json", str(out), "--no-progress"]) == 0
    return json.loads(out.read_text())


def test_vit_by_folder_matches_a_dense_route(vit, tmp_path):
    from transformers import AutoModelForImageClassification

    folder, data = vit
    result = _spectrum(
        tmp_path, "vit", "--model", f"hf:{folder}", "--dataset", str(data), "--split", "test",
        "--points", "4", "--dtype", "float64",
    )  # fmt: skip
    assert result["dtypes"]["forward_and_jacobian"] == "float64"
    raw = AutoModelForImageClassification.from_pretrained(folder).eval().double()
    mean = torch.tensor(MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float64)[:, None, None]
    images = np.load(data)["x_test"]
    assert len(result["points"]) == 4
    for point in result["points"]:
        x = torch.from_numpy(images[point["index"]]).double().permute(2, 0, 1)

        def f(z):
            return raw(pixel_values=((z - mean) / std)[None]).logits[0]

        dense = dense_top(f, x, 5).log10()
        assert np.allclose(point["log10_eigenvalues"][:5], dense.numpy(), atol=1e-5)


def test_bert_by_folder_matches_a_dense_route_in_input_embeddings(bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, data = bert
    result = _spectrum(
        tmp_path, "bert", "--model", f"hf:{folder}", "--dataset", str(data), "--points", "4",
        "--dtype", "float64",
    )  # fmt: skip
    raw = AutoModelForSequenceClassification.from_pretrained(folder).eval().double()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for point in result["points"]:
        ids = tokenizer(TEXTS[point["index"]], return_tensors="pt")["input_ids"]
        e = raw.get_input_embeddings()(ids)[0].detach()

        def f(z):
            return raw(inputs_embeds=z[None]).logits[0]

        dense = dense_top(f, e, 3).log10()
        assert np.allclose(point["log10_eigenvalues"][:3], dense.numpy(), atol=1e-5)
        assert point["rank"] <= 3  # C - 1
        shares = point["token_shares"]
        assert [t for t, _ in shares] == tokenizer.convert_ids_to_tokens(ids[0])
        assert abs(sum(s for _, s in shares) - 1) < 1e-9 and min(s for _, s in shares) >= 0


def test_text_top_k_matches_the_exact_text_spectrum(bert, tmp_path):
    folder, data = bert
    common = ["--model", f"hf:{folder}", "--dataset", str(data), "--points", "3"]
    exact = _spectrum(tmp_path, "exact", *common)
    top = _spectrum(tmp_path, "top", *common, "--top-k", "2")
    for a, b in zip(exact["points"], top["points"], strict=True):
        assert np.allclose(a["log10_eigenvalues"][:2], b["log10_eigenvalues"], atol=1e-8)
        assert b["converged"] and b["token_shares"] == []  # the shares need the exact factor


def test_text_shares_are_the_diagonal_of_g_per_token(bert):
    from leafscope.information import DataInformation
    from leafscope.models import ModelSpec, load_model

    folder, _ = bert
    model = load_model(ModelSpec(checkpoint=f"hf:{folder}"))
    e = model.embed_text(TEXTS[2]).double()
    G = DataInformation(model, e, dtype=torch.float64)
    dense = G.dense()[0].diagonal().reshape(e.shape[1], -1).sum(-1) / G.trace()[0]
    per_token = G.factor.pow(2).sum(1).reshape(e.shape[1], -1).sum(-1) / G.trace()[0]
    assert torch.allclose(per_token, dense, atol=1e-12)


def test_bfloat16_vit_top3_within_5_percent_of_float64(vit, tmp_path):
    folder, data = vit
    common = ["--model", f"hf:{folder}", "--dataset", str(data), "--split", "test", "--points"]
    f64 = _spectrum(tmp_path, "f64", *common, "8", "--dtype", "float64")
    bf16 = _spectrum(tmp_path, "bf16", *common, "8", "--dtype", "bfloat16")
    assert bf16["dtypes"] == {
        "forward_and_jacobian": "bfloat16", "probabilities": "float32",
        "factor_gram_and_eigenproblem": "float32", "rows": "float64",
    }  # fmt: skip
    for a, b in zip(f64["points"], bf16["points"], strict=True):
        ref, got = (
            10 ** np.array(a["log10_eigenvalues"][:3]),
            10 ** np.array(b["log10_eigenvalues"][:3]),
        )
        assert np.all(np.abs(got - ref) / ref < 0.05)


def test_hutchinson_trace_beside_the_exact_trace(vit, tmp_path):
    folder, data = vit
    result = _spectrum(
        tmp_path, "hutch", "--model", f"hf:{folder}", "--dataset", str(data), "--split", "test",
        "--points", "4", "--trace-estimator", "hutchinson", "--probes", "256",
    )  # fmt: skip
    for point in result["points"]:
        exact = 10 ** point["log10_trace"]
        z = abs(point["trace_estimate"] - exact) / point["trace_stderr"]
        assert z < 5 and point["trace_stderr"] < 0.5 * exact
    assert result["probes"] == 256 and "median_relative_stderr" in result["summary"]
    top = _spectrum(
        tmp_path, "topk", "--model", f"hf:{folder}", "--dataset", str(data), "--split", "test",
        "--points", "4", "--top-k", "3", "--trace-estimator", "hutchinson", "--probes", "32",
    )  # fmt: skip
    for a, b in zip(result["points"], top["points"], strict=True):
        assert np.allclose(a["log10_eigenvalues"][:3], b["log10_eigenvalues"], atol=1e-3)
        assert np.isfinite(b["trace_estimate"])


def test_text_job_in_slices_merges_to_the_whole(bert, tmp_path):
    from leafscope.data import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models import ModelSpec
    from leafscope.tasks.spectrum import SpectrumParams

    folder, data = bert
    job = make_job(
        "spectrum",
        SpectrumParams(dtype="float64"),
        model=ModelSpec(checkpoint=f"hf:{folder}"),
        data=DataSpec(name=str(data), split="all"),
        points=8,
        shard_size=3,
    )
    whole = run(job, RunOptions(progress=False))
    assert whole.complete and len(whole.rows["index"]) == 8
    parts = tmp_path / "parts"
    for i in (1, 2):
        run(job, RunOptions(progress=False, part=(i, 2)), out=parts)
    assert main(["merge", str(parts)]) == 0
    from leafscope.execution.results import ResultFolder

    merged = ResultFolder(parts).read_columns(3)
    order = np.argsort(merged["index"])
    assert np.allclose(
        np.stack(merged["eigenvalues"])[order],
        np.stack(whole.rows["eigenvalues"])[np.argsort(whole.rows["index"])],
    )
    assert list(merged["token_shares"][order]) == list(
        whole.rows["token_shares"][np.argsort(whole.rows["index"])]
    )


def test_image_only_commands_refuse_texts_in_one_line(bert, capsys):
    folder, data = bert
    code = main(["denoise", "--model", f"hf:{folder}", "--dataset", str(data), "--points", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "images" in err


def test_image_model_refuses_texts_and_text_model_refuses_images(vit, bert, capsys):
    (vit_folder, images), (bert_folder, texts) = vit, bert
    code = main(["spectrum", "--model", f"hf:{vit_folder}", "--dataset", str(texts)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "texts but the model takes tensors" in err and "\n" not in err
    code = main(["spectrum", "--model", f"hf:{bert_folder}", "--dataset", str(images)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not images or vectors" in err and "\n" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["ood", "--ood", "noise", "--holdout", "0.3"],
        ["transfer", "--holdout", "0.3"],
        ["curvature", "--split", "all", "--points", "2"],
        ["attack", "--split", "all", "--points", "2"],
        ["path", "--split", "all", "--from", "0", "--to", "1"],
        ["explore", "--split", "all", "--points", "2"],
        ["involutivity", "--split", "all", "--points", "2"],
        ["adversarial", "--split", "all", "--points", "2"],
    ],
    ids=lambda a: a[0],
)
def test_tasks_that_do_not_measure_texts_refuse_them_in_one_line(bert, argv, capsys, tmp_path):
    """Before this check some of them ended in an AttributeError deep inside (a TextBatch has
    no shape), ood in a message about input_shape."""
    folder, data = bert
    data_flag = "--in" if argv[0] == "ood" else "--dataset"
    extra = ["--datasets", str(data)] if argv[0] == "transfer" else []
    extra += ["--out", str(tmp_path / "o")] if argv[0] == "explore" else []
    code = main([*argv, "--model", f"hf:{folder}", data_flag, str(data), *extra, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert f"{argv[0]} works on images and vectors, but" in err and "holds texts" in err
    assert err.endswith("the tasks that measure text classifiers are spectrum")
    assert not (tmp_path / "o").exists()
