"""Models by path or id: ``hf:FOLDER`` (tiny ViT and BERT built from configs, saved with
save_pretrained, loaded offline) and ``timm:NAME`` (a stand-in module where timm is absent)."""

from __future__ import annotations

import os
import shutil
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from leafscope.errors import InputError  # noqa: E402
from leafscope.information import DataInformation  # noqa: E402
from leafscope.models import ModelAdapter, ModelSpec, load_model, load_notes  # noqa: E402
from leafscope.models.hub import parse_hub, processor_settings  # noqa: E402

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    pytest.importorskip("transformers", reason="needs transformers: pip install 'leafscope[hf]'")
    from leafscope.testing.hub import save_tiny_vit

    return save_tiny_vit(tmp_path_factory.mktemp("hub") / "vit", mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    pytest.importorskip("transformers", reason="needs transformers: pip install 'leafscope[hf]'")
    from leafscope.testing.hub import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("hub") / "bert")


def _raw_vit(folder):
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()


def dense_eigenvalues(f, x: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest eigenvalues of G = Jᵀ M J, M = diag p − p pᵀ, at one point, from the dense
    Jacobian of torch.autograd.functional.jacobian: those of the C×C matrix M½ J Jᵀ M½."""
    logits = f(x)
    p = torch.softmax(logits, dim=0)
    jac = torch.autograd.functional.jacobian(f, x).reshape(logits.shape[0], -1)
    w, v = torch.linalg.eigh(torch.diag(p) - torch.outer(p, p))
    root = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    return torch.linalg.eigvalsh(root @ jac @ jac.T @ root).flip(0)[:k].detach()


def test_parse_hub_sources(tmp_path):
    assert parse_hub("hf:google/vit-base-patch16-224@main").revision == "main"
    assert parse_hub("hf:google/vit-base-patch16-224").revision is None
    folder = tmp_path / "my@model"
    folder.mkdir()
    ref = parse_hub(f"hf:{folder}")  # an existing folder is taken whole
    assert ref.name == str(folder) and ref.revision is None and ref.local
    assert parse_hub("timm:resnet18").kind == "timm"
    with pytest.raises(InputError, match="names no model"):
        parse_hub("hf:")
    with pytest.raises(InputError, match="no revision"):
        parse_hub("timm:resnet18@v1")


def test_processor_settings_read_the_size_and_the_normalisation():
    crop = processor_settings(
        {"image_mean": [0.5], "image_std": [0.5], "do_center_crop": True,
         "crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 256}}
    )  # fmt: skip
    assert crop["size"] == (224, 224) and crop["mean"] == (0.5,)
    assert processor_settings({"do_normalize": False, "image_mean": [0.5]})["mean"] is None
    edge = processor_settings({"size": {"shortest_edge": 224}})
    assert edge["size"] == (224, 224) and edge["notes"]


def test_hf_image_model_by_folder_has_its_normalisation_inside(vit_folder):
    spec = ModelSpec(factory=f"hf:{vit_folder}")  # --model hf:FOLDER moves to the checkpoint
    assert spec.checkpoint == f"hf:{vit_folder}" and spec.factory is None
    model = spec.load()
    assert isinstance(model, ModelAdapter)
    notes = " ".join(load_notes(model))
    assert "processor config" in notes and "pixel units" in notes
    raw = _raw_vit(vit_folder)
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(MEAN)[:, None, None]
    std = torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        expected = raw(pixel_values=(x - mean) / std).logits
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_hf_image_g_agrees_with_a_dense_route_in_pixel_units(vit_folder):
    model = load_model(ModelSpec(checkpoint=f"hf:{vit_folder}"))
    raw = _raw_vit(vit_folder).double()
    mean = torch.tensor(MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float64)[:, None, None]
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    values = DataInformation(model, x, dtype=torch.float64).eigenvalues()
    for i in range(2):

        def f(z):
            return raw(pixel_values=((z - mean) / std)[None]).logits[0]

        dense = dense_eigenvalues(f, x[i], 5)
        assert torch.allclose(values[i, :5].log10(), dense.log10(), atol=1e-8)


def test_hf_image_model_resizes_other_sizes_inside(vit_folder):
    model = load_model(ModelSpec(checkpoint=f"hf:{vit_folder}"))
    x = torch.rand(2, 3, 48, 48)
    resized = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        assert torch.allclose(model(x), model(resized), atol=1e-6)
    G = DataInformation(model, x[:1], dtype=torch.float64)
    assert G.dim == 3 * 48 * 48  # G lives at the data's own size


def test_hf_fingerprint_hashes_the_folder(vit_folder, tmp_path):
    spec = ModelSpec(checkpoint=f"hf:{vit_folder}")
    files = spec.files()
    assert {"hf/config.json", "hf/model.safetensors", "hf/preprocessor_config.json"} <= set(files)
    copy = shutil.copytree(vit_folder, tmp_path / "copy")
    other = ModelSpec(checkpoint=f"hf:{copy}")
    assert other.content_key() == spec.content_key()
    assert other.fingerprint() != spec.fingerprint()  # the paths differ
    config = copy / "preprocessor_config.json"
    config.write_text(config.read_text().replace("0.25", "0.5"))
    assert ModelSpec(checkpoint=f"hf:{copy}").content_key() != spec.content_key()


def test_relative_hf_folder_becomes_absolute(vit_folder, monkeypatch):
    monkeypatch.chdir(vit_folder.parent)
    spec = ModelSpec(checkpoint="hf:vit").absolute()
    assert spec.checkpoint == f"hf:{vit_folder.resolve()}"
    assert ModelSpec(checkpoint="hf:owner/name@v2").absolute().checkpoint == "hf:owner/name@v2"


def test_hf_id_not_in_the_cache_is_one_line(vit_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="local Hugging Face cache") as info:
        load_model(ModelSpec(checkpoint="hf:leafscope-tests/no-such-model@v1"))
    assert "\n" not in str(info.value)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(InputError, match=r"leafscope\[hf\]"):
        load_model(ModelSpec(checkpoint="hf:owner/name"))
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(InputError, match=r"leafscope\[timm\]"):
        load_model(ModelSpec(checkpoint="timm:resnet18"))


def test_factory_kwargs_only_with_a_source_that_takes_them():
    with pytest.raises(InputError, match="factory_kwargs"):
        ModelSpec(checkpoint="run.pt", factory_kwargs='{"a": 1}')
    assert ModelSpec(checkpoint="timm:resnet18", factory_kwargs='{"num_classes": 3}')


def _fake_timm(calls: list) -> types.ModuleType:
    """A stand-in for timm (its create_model and data config), for machines without timm."""
    timm = types.ModuleType("timm")

    def create_model(name, pretrained=False, num_classes=1000, **kwargs):
        calls.append((name, pretrained, num_classes))
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(400, num_classes))

    timm.create_model = create_model
    timm.data = types.SimpleNamespace(
        resolve_data_config=lambda args, model=None: {
            "input_size": (3, 12, 12),
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
        }  # fmt: skip
    )
    return timm


def test_timm_model_gets_its_data_config_inside(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(calls))
    model = load_model(ModelSpec(checkpoint="timm:tiny", factory_kwargs='{"num_classes": 5}'))
    assert calls == [("tiny", True, 5)]  # pretrained weights unless `weights` is given
    x = torch.rand(2, 3, 12, 12)
    inner = model._wrapped
    mean = torch.tensor((0.485, 0.456, 0.406))[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    with torch.no_grad():
        assert torch.allclose(model(x), inner((x - mean) / std), atol=1e-6)
        assert model(torch.rand(1, 3, 20, 20)).shape == (1, 5)  # resized inside


def test_timm_with_weights_is_not_pretrained(monkeypatch, tmp_path):
    calls: list = []
    fake = _fake_timm(calls)
    monkeypatch.setitem(sys.modules, "timm", fake)
    net = fake.create_model("tiny", num_classes=5)
    net(torch.rand(1, 3, 12, 12))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    calls.clear()
    spec = ModelSpec(checkpoint="timm:tiny", weights=str(tmp_path / "w.pt"),
                     factory_kwargs='{"num_classes": 5}')  # fmt: skip
    load_model(spec)
    assert calls == [("tiny", False, 5)]


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("timm") is None, reason="timm is not installed"
)
def test_real_timm_model_loads_offline_without_pretrained_weights():
    try:
        import timm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - e.g. timm without a working torchvision
        pytest.skip(f"timm does not import here ({type(exc).__name__}: {exc})")
    model = load_model(
        ModelSpec(
            checkpoint="timm:resnet18", factory_kwargs='{"pretrained": false, "num_classes": 3}'
        )
    )
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_hf_text_model_by_folder(bert_folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from leafscope.models.text import TextClassifier

    model = load_model(ModelSpec(checkpoint=f"hf:{bert_folder}"))
    assert isinstance(model, TextClassifier)
    raw = AutoModelForSequenceClassification.from_pretrained(bert_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(bert_folder)
    texts = ["the cat sat on the mat", "a very good movie"]
    with torch.no_grad():
        expected = raw(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        assert torch.allclose(model(texts), expected, atol=1e-6)
    with pytest.raises(InputError, match="normalize"):
        load_model(ModelSpec(checkpoint=f"hf:{bert_folder}", normalize="imagenet"))


def test_text_g_is_taken_in_the_input_word_embeddings(bert_folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = load_model(ModelSpec(checkpoint=f"hf:{bert_folder}"))
    raw = AutoModelForSequenceClassification.from_pretrained(bert_folder).eval().double()
    ids = AutoTokenizer.from_pretrained(bert_folder)("the dog was not bad", return_tensors="pt")
    e = raw.get_input_embeddings()(ids["input_ids"])[0].detach()
    assert torch.equal(model.embed_text("the dog was not bad")[0].double(), e)
    values = DataInformation(model, e[None], dtype=torch.float64).eigenvalues()[0]

    def f(z):
        return raw(inputs_embeds=z[None]).logits[0]

    dense = dense_eigenvalues(f, e, 2)
    assert values.shape == (2,)  # C - 1 = 2 nonzero eigenvalues
    assert torch.allclose(values.log10(), dense.log10(), atol=1e-8)
