"""PSNR, AUROC and FPR@95TPR against hand-computed values."""

import math

import numpy as np
import pytest

from leafscope.applications.metrics import auroc, fpr_at_tpr, psnr, roc_points
from leafscope.errors import InputError


def test_psnr_hand_value():
    ref = np.zeros((1, 2, 2))
    est = np.array([[[0.1, 0.0], [0.0, 0.3]]])
    # MSE = (0.01 + 0.09) / 4 = 0.025 → PSNR = 10·log10(1/0.025) = 16.0206 dB
    assert psnr(ref, est)[0] == pytest.approx(10 * math.log10(40), abs=1e-12)
    assert psnr(ref, est)[0] == pytest.approx(16.0206, abs=1e-4)
    assert psnr(ref, est, data_range=2.0)[0] == pytest.approx(10 * math.log10(160))
    assert np.isinf(psnr(ref, ref)[0])


def test_psnr_batch_agrees_with_the_formula_per_image():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 255, (5, 3, 4, 4))
    est = ref + rng.normal(0, [[[[1.0]]], [[[2.0]]], [[[4.0]]], [[[8.0]]], [[[16.0]]]], ref.shape)
    mse = ((ref - est) ** 2).reshape(5, -1).mean(1)
    want = 10 * np.log10(255.0**2 / mse)
    got = psnr(ref, est, data_range=255.0)
    assert got.shape == (5,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(np.diff(got) < 0)  # more noise, lower PSNR


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(InputError, match="equal shape"):
        psnr(np.zeros((2, 3)), np.zeros((2, 4)))


def test_auroc_and_fpr_hand_values():
    s_in = np.array([0.9, 0.8, 0.7, 0.3])
    s_out = np.array([0.75, 0.2, 0.1, 0.05])
    # pairs (in > out): 0.9,0.8 beat all 4; 0.7 beats 3; 0.3 beats 3 → 14/16
    assert auroc(s_in, s_out) == pytest.approx(14 / 16)
    # 95% TPR needs all 4 in-points accepted → threshold 0.3 → 1 of 4 out points accepted
    assert fpr_at_tpr(s_in, s_out) == pytest.approx(0.25)
    # 75% TPR: threshold 0.7 → 0.75 accepted → 1/4
    assert fpr_at_tpr(s_in, s_out, tpr=0.75) == pytest.approx(0.25)
    # 50% TPR: threshold 0.8 → none accepted
    assert fpr_at_tpr(s_in, s_out, tpr=0.5) == pytest.approx(0.0)
    assert auroc(s_in + 10, s_out) == 1.0 and fpr_at_tpr(s_in + 10, s_out) == 0.0


def test_roc_points_of_a_perfect_and_a_tied_detector():
    fpr, tpr = roc_points(np.array([0.9, 0.8]), np.array([0.1, 0.2]))
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert any(f == 0 and t == 1 for f, t in zip(fpr, tpr, strict=True))  # separates fully
    fpr, tpr = roc_points(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]  # one tie: the diagonal


def test_aupr_matches_average_precision_and_a_hand_value():
    from sklearn.metrics import average_precision_score

    from leafscope.applications.metrics import aupr_in, aupr_out

    s_in = np.array([0.9, 0.8, 0.7, 0.3])
    s_out = np.array([0.75, 0.2, 0.1, 0.05])
    # ranked: 0.9 in, 0.8 in, 0.75 out, 0.7 in, 0.3 in → AP = (1 + 1 + 3/4 + 4/5) / 4
    assert aupr_in(s_in, s_out) == pytest.approx((1 + 1 + 0.75 + 0.8) / 4)
    labels = np.r_[np.ones(4), np.zeros(4)]
    assert aupr_in(s_in, s_out) == pytest.approx(
        average_precision_score(labels, np.r_[s_in, s_out])
    )
    assert aupr_out(s_in, s_out) == pytest.approx(
        average_precision_score(1 - labels, -np.r_[s_in, s_out])
    )
    # lowest first: 0.05, 0.1, 0.2 out (3/3), 0.3 in, 0.7 in, 0.75 out (4/6) → (1+1+1+4/6)/4
    assert aupr_out(s_in, s_out) == pytest.approx((3 + 4 / 6) / 4)
    assert aupr_in(s_in + 10, s_out) == 1.0 == aupr_out(s_in + 10, s_out)
