"""Summary medians follow numpy: the mean of the two middle values for an even count."""

from __future__ import annotations

import pytest
import torch

from leafscope.information import summarize_spectra


def test_even_count_median_is_mean_of_the_two_middle_values() -> None:
    # log10 λ1 = 0, 1, 2, 3 and log10 λ2 = -4 (fixed): numpy median 1.5 (torch.median: 1.0).
    eig = torch.tensor([[1.0, 1e-4], [10.0, 1e-4], [100.0, 1e-4], [1000.0, 1e-4]])
    trace = torch.tensor([1e2, 1e1, 1e4, 1e3], dtype=torch.float64)  # log10: 2, 1, 4, 3
    s = summarize_spectra(eig, trace)
    assert s.median_log10_highest == pytest.approx(1.5)
    assert s.median_log10_lowest == pytest.approx(-4.0)
    assert s.median_delta == pytest.approx(5.5)
    assert s.median_log10_trace == pytest.approx(2.5)


def test_odd_count_median_is_the_middle_value() -> None:
    eig = torch.tensor([[1e3, 1.0], [1e1, 1.0], [1e2, 1.0]])
    s = summarize_spectra(eig, torch.tensor([1.0, 1e-2, 1e5]))
    assert s.median_log10_highest == pytest.approx(2.0)
    assert s.median_log10_trace == pytest.approx(0.0)
