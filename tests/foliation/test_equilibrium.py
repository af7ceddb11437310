"""Trace/rank of G across checkpoints."""

import torch

from leafscope.foliation import (
    trace_rank_across_checkpoints,
)
from leafscope.models import build_model
from leafscope.training import save_checkpoint


def test_saturated_checkpoint_has_small_trace_and_low_rank(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", activation="gelu", hidden=(32,), num_classes=4, image_size=8)
    paths = [save_checkpoint(tmp_path / "epoch_0000.pt", model=model, epoch=0, step=0, history=[])]
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([60.0, 0.0, 0.0, 0.0]))
    paths.append(
        save_checkpoint(tmp_path / "epoch_0001.pt", model=model, epoch=1, step=5, history=[])
    )
    images = torch.rand(10, 1, 8, 8)
    res = trace_rank_across_checkpoints(paths[::-1], images, atol=1e-14)
    assert res.epochs == [0, 1]
    assert (res.traces[1] < 1e-10 * res.traces[0]).all()
    assert (res.ranks[0] == 3).all() and (res.ranks[1] == 0).all()
    assert res.rank_histogram().tolist() == [[0, 0, 0, 10], [10, 0, 0, 0]]
    js = res.to_json()
    assert js["checkpoints"][1]["mean_rank"] == 0.0
