"""The slow OOD detectors show a progress bar when asked (``progress=True`` in ``fit``,
``score_samples`` and ``components``), print nothing otherwise, and give the same scores."""

import numpy as np
import pytest

from leafscope.applications import make_detector, ood_leaf
from leafscope.applications.leaf import project_onto_leaf

SLOW = {
    "leaf-distance": {"max_steps": 2},
    "leaf-pixel": {"max_steps": 2, "n_scale_points": 20},
    "dim-trace": {},
    "dim-spectrum": {"max_fit_points": 40},
    "pixel-nn": {},
}


@pytest.mark.parametrize("name", list(SLOW))
def test_progress_bar_only_when_asked_and_the_same_scores(name, toy, capsys, monkeypatch):
    model, x, y, xt, _ = toy
    quiet = make_detector(name, model, **SLOW[name]).fit(x, y)
    s_quiet = quiet.score_samples(xt)
    assert capsys.readouterr().err == ""  # the default prints nothing
    monkeypatch.setattr(ood_leaf, "PROGRESS_DELAY", 0.0)  # show at once (tiny work)
    shown = make_detector(name, model, **SLOW[name]).fit(x, y, progress=True)
    s_shown = shown.score_samples(xt, progress=True)
    np.testing.assert_array_equal(s_shown, s_quiet)
    err = capsys.readouterr().err
    if name.startswith("leaf"):
        assert f"{name} paths" in err and f"0/{len(xt)} " in err  # a bar over the points
    elif name.startswith("dim"):
        assert "spectra" in err  # point_spectra's bar
    assert shown._progress is False  # the setting lasts one call


def test_components_take_progress_and_batches_keep_the_distances(toy, capsys, monkeypatch):
    model, x, y, xt, _ = toy
    det = make_detector("leaf-pixel", model, max_steps=2, n_scale_points=20).fit(x, y)
    whole = det.components(xt)
    monkeypatch.setattr(ood_leaf, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(ood_leaf, "PATH_BATCH", 7)  # 9 batches of points, not one
    calls = []

    def counted(model, anchors, targets, **kwargs):
        calls.append(len(anchors))
        return project_onto_leaf(model, anchors, targets, **kwargs)

    monkeypatch.setattr(ood_leaf, "project_onto_leaf", counted)
    capsys.readouterr()
    parts = det.components(xt, progress=True)
    assert calls == [7] * 8 + [len(xt) - 56]
    np.testing.assert_allclose(parts[0], whole[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(parts[1], whole[1])
    assert f"leaf-pixel paths:   0%|          | 0/{len(xt)} " in capsys.readouterr().err
