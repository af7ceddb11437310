"""Texts as points: .csv (text column + label column), .jsonl, .txt; splits and refusals."""

from __future__ import annotations

import json

import pytest

from leafscope.data import DataSpec, open_points
from leafscope.data.text import TextBatch, read_texts
from leafscope.errors import InputError

TEXTS = ["the cat sat on the mat", "a very good movie", "not bad", "terrible plot", "loved it"]


def _csv(path, rows, header=("text", "label")):
    lines = [",".join(header)] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_of_texts_opens_as_texts_and_take_gives_a_text_batch(tmp_path):
    path = _csv(tmp_path / "texts.csv", [(t, i % 2) for i, t in enumerate(TEXTS)])
    points = DataSpec(name=str(path), split="all").open()
    assert points.is_text and not points.is_image and len(points) == 5
    x, y = points.take([3, 0])
    assert isinstance(x, TextBatch) and list(x) == [TEXTS[3], TEXTS[0]]
    assert y.tolist() == [1, 0] and x.to("cpu") is x
    info = points.describe()
    assert info["kind"] == "texts" and info["num_classes"] == 2


def test_every_split_name_reads_a_file_without_a_split_column_whole(tmp_path):
    path = _csv(tmp_path / "texts.csv", [(t, 0) for t in TEXTS])
    test = DataSpec(name=str(path)).open()  # the default split, test
    assert len(test) == 5 and "whole file serves as test" in test.describe()["source"]
    held = DataSpec(name=str(path), split="test", holdout=0.4).open()
    train = DataSpec(name=str(path), split="train", holdout=0.4).open()
    assert len(held) == 2 and len(train) == 3 and held.is_text
    assert sorted(list(held.take(range(2))[0]) + list(train.take(range(3))[0])) == sorted(TEXTS)


def test_split_column_gives_the_set_its_own_split(tmp_path):
    rows = [(t, 1, "train" if i < 3 else "test") for i, t in enumerate(TEXTS)]
    path = _csv(tmp_path / "texts.csv", rows, header=("text", "label", "split"))
    spec = DataSpec(name=str(path), split="test")
    assert spec.has_split()
    assert list(spec.open().take([0, 1])[0]) == TEXTS[3:]
    assert len(DataSpec(name=str(path), split="all").open()) == 5
    with pytest.raises(InputError, match="own train/test split"):
        DataSpec(name=str(path), split="test", holdout=0.5).open()


def test_text_column_names_another_column_and_class_names_are_numbered(tmp_path):
    path = _csv(
        tmp_path / "reviews.csv",
        [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)],
        header=("sentence", "sentiment"),
    )
    points = open_points(str(path), "all", text_column="sentence", label_column="sentiment")
    assert points.class_names == ["neg", "pos"] and points.labels.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(InputError, match="no text column 'review'"):
        open_points(str(path), "all", text_column="review", label_column="sentiment")


def test_jsonl_and_txt(tmp_path):
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": i}) for i, t in enumerate(TEXTS)))
    points = DataSpec(name=str(jsonl), split="all").open()
    assert list(points.take([4])[0]) == [TEXTS[4]] and points.labels.tolist() == [0, 1, 2, 3, 4]
    txt = tmp_path / "texts.txt"
    txt.write_text("\n".join(TEXTS) + "\n\n")
    points = DataSpec(name=str(txt), split="all").open()
    assert len(points) == 5 and bool((points.labels == -1).all())
    assert read_texts(txt)["source"].endswith("(one text a line, unlabelled)")


def test_numeric_csv_stays_vectors_and_image_fingerprints_are_unchanged(tmp_path):
    path = _csv(tmp_path / "v.csv", [(0.1, 0.2, 1), (0.3, 0.4, 0)], header=("a", "b", "label"))
    points = DataSpec(name=str(path), split="all").open()
    assert not points.is_text and points.input_shape == (2,)
    assert "text_column" not in DataSpec(name="mnist").fingerprint()
    assert DataSpec(name="x.csv", text_column="t").fingerprint()["text_column"] == "t"


def test_image_conversions_and_bad_rows_are_refused_in_one_line(tmp_path):
    path = _csv(tmp_path / "texts.csv", [(t, 0) for t in TEXTS])
    with pytest.raises(InputError, match="holds texts"):
        DataSpec(name=str(path), split="all", grey=True).open()
    with pytest.raises(InputError, match="label column 'y'"):
        open_points(str(path), "all", label_column="y")
    assert bool((open_points(str(path), "all", label_column="none").labels == -1).all())
    bad = _csv(tmp_path / "bad.csv", [("", 0)])
    with pytest.raises(InputError, match="no text"):
        open_points(str(bad), "all")


def test_the_model_check_refuses_texts_for_an_image_model(tmp_path):
    from leafscope.data import check_model_input
    from leafscope.testing import tiny_mlp

    with pytest.raises(InputError, match="texts but the model takes tensors"):
        check_model_input(tiny_mlp(n_in=4), TextBatch(["a text"]))
