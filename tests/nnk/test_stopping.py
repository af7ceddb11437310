"""Channel-wise early stopping (CW-DeepNNK): the patience rule, weight freezing, validation rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leafscope.errors import InputError
from leafscope.nnk import stopping
from leafscope.nnk.stopping import (
    ChannelEarlyStopping,
    ChannelStoppingRule,
    channel_loo_errors,
    train_with_channel_stopping,
    validation_stopping_epoch,
)
from leafscope.testing import tiny_cnn

SCRIPT = [  # rows = epochs 1..5, columns = channels
    [0.50, 0.50, 0.50],
    [0.40, 0.50, 0.60],  # ch1, ch2 do not improve (wait 1)
    [0.30, 0.55, 0.40],  # ch1 wait 2 -> frozen at 3; ch2 improves (wait 0)
    [0.20, 0.10, 0.45],  # ch1 frozen: its improvement is ignored; ch2 wait 1
    [0.10, 0.10, 0.40],  # ch2 equal is no improvement: wait 2 -> frozen at 5
]


def test_rule_freezes_exactly_after_patience_epochs():
    rule = ChannelStoppingRule(patience=2)
    new = [rule.update(e, np.array(err)) for e, err in enumerate(SCRIPT, start=1)]
    assert [list(np.flatnonzero(n)) for n in new] == [[], [], [1], [], [2]]
    assert rule.frozen_at.tolist() == [-1, 3, 5]
    assert rule.best.tolist() == [0.10, 0.50, 0.40]
    assert not rule.all_frozen
    state = rule.state_dict()
    clone = ChannelStoppingRule(patience=2)
    clone.load_state_dict(state)
    assert clone.frozen_at.tolist() == [-1, 3, 5]


def test_rule_min_delta_and_bad_input():
    rule = ChannelStoppingRule(patience=1, min_delta=0.05)
    rule.update(1, np.array([0.5]))
    assert rule.update(2, np.array([0.46])).tolist() == [True]  # 0.04 < min_delta
    with pytest.raises(InputError, match="patience"):
        ChannelStoppingRule(patience=0)
    with pytest.raises(InputError, match="same channels"):
        rule.update(3, np.array([0.1, 0.2]))


def test_validation_stopping_epoch():
    assert validation_stopping_epoch([0.5, 0.6, 0.55, 0.58, 0.7], patience=2) == (4, 2)
    assert validation_stopping_epoch([0.5, 0.6, 0.7], patience=2) == (3, 3)


def _data(n=60):
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 3
    x = torch.randn(3, 1, 8, 8, generator=gen)[y] + 0.5 * torch.randn(n, 1, 8, 8, generator=gen)
    return x, y


def test_channel_loo_errors_match_classifier():
    from leafscope.nnk.interpolation import NNKClassifier

    x, y = _data()
    model = tiny_cnn()
    err = channel_loo_errors(model, x, y, "0", k=6)
    feats = model[0](x).detach().reshape(60, 4, -1)
    assert err.shape == (4,)
    assert err[2] == NNKClassifier(k=6).fit(feats[:, 2], y).loo_error_
    with pytest.raises(InputError, match="channel axis"):
        channel_loo_errors(model, x, y, "4")


def test_training_stops_and_frozen_channels_keep_their_weights(tmp_path, monkeypatch):
    script = iter([[0.5] * 4, [0.6, 0.4, 0.4, 0.4], [0.6, 0.5, 0.5, 0.5], [0.6, 0.5, 0.5, 0.5]])
    monkeypatch.setattr(stopping, "channel_loo_errors", lambda *a, **kw: np.array(next(script)))
    x, y = _data()
    model = tiny_cnn()
    cb = ChannelEarlyStopping("0", x, y, patience=2)
    seen = {}

    orig = cb.update

    def update(epoch, net):
        out = orig(epoch, net)
        seen[epoch] = net[0].weight.detach().clone()
        return out

    cb.update = update
    res = train_with_channel_stopping(model, (x, y), cb, epochs=6, out_dir=tmp_path,
                                      lr=0.1, momentum=0.9, batch_size=16)  # fmt: skip
    # ch0: no improvement at epochs 2, 3 -> frozen at 3; ch1-3 improve at 2, stall 3, 4 -> 4
    assert res.frozen_at == [3, 4, 4, 4] and res.stop_epoch == 4 and res.stopped
    assert len(res.fit_result.history) == 4
    assert torch.equal(seen[4][0], seen[3][0])  # frozen channel unchanged (even with momentum)
    assert not torch.equal(seen[4][1], seen[3][1])  # active channel still trained
    assert not torch.equal(seen[3][0], seen[2][0])
