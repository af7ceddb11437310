"""Group pruning through torch.nn.utils.prune: exact zeros, undo, scores, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from leafscope.errors import InputError
from leafscope.models import build_model
from leafscope.thermo.pruning import (
    feature_frequency,
    fine_tune,
    magnitude_scores,
    make_permanent,
    mask_groups,
    masked,
    random_scores,
    select_groups,
    taylor_scores,
    unmask,
)


@pytest.fixture()
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet").eval()


def _images(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(3))


def test_masking_zeroes_exactly_the_chosen_filter_and_its_output_map(lenet):
    x = _images()
    before_w = lenet.conv1.weight.detach().clone()
    before_b = lenet.conv1.bias.detach().clone()
    maps_before = lenet.conv1(x).detach()
    mask_groups(lenet, "conv1", [2, 4])
    assert prune.is_pruned(lenet)
    w, b = lenet.conv1.weight, lenet.conv1.bias
    assert torch.all(w[[2, 4]] == 0) and torch.all(b[[2, 4]] == 0)
    keep = [0, 1, 3, 5]
    assert torch.equal(w[keep], before_w[keep]) and torch.equal(b[keep], before_b[keep])
    maps = lenet.conv1(x).detach()
    assert torch.all(maps[:, [2, 4]] == 0)
    assert torch.equal(maps[:, keep], maps_before[:, keep])


def test_zero_percent_pruning_and_undo_leave_outputs_unchanged(lenet):
    x = _images()
    out = lenet(x).detach()
    mask_groups(lenet, "conv1", [])
    assert torch.equal(lenet(x).detach(), out)
    unmask(lenet, "conv1")
    with masked(lenet, "conv1", [0, 1, 2]):
        assert not torch.equal(lenet(x).detach(), out)
    assert not prune.is_pruned(lenet)
    assert isinstance(lenet.conv1.weight, nn.Parameter)
    assert torch.equal(lenet(x).detach(), out)


def test_masks_compose_and_survive_fine_tuning(lenet):
    mask_groups(lenet, "conv1", [0])
    mask_groups(lenet, "conv1", [5])  # composes with the first mask
    x, y = _images(16), torch.arange(16) % 10
    before = lenet.conv1.weight_orig.detach().clone()
    fine_tune(lenet, (x, y), epochs=3, lr=1e-2, batch_size=8)
    lenet(x)
    assert torch.all(lenet.conv1.weight[[0, 5]] == 0) and torch.all(lenet.conv1.bias[[0, 5]] == 0)
    assert not torch.equal(lenet.conv1.weight[1:5], before[1:5])  # the others were retrained
    make_permanent(lenet, "conv1")
    assert isinstance(lenet.conv1.weight, nn.Parameter)
    assert torch.all(lenet.conv1.weight[[0, 5]] == 0)


def test_feature_masking_on_gcn_equals_zeroing_the_input_column():
    torch.manual_seed(0)
    model = build_model("gcn", in_channels=12, num_classes=3, hidden=4).eval()
    x = torch.rand(6, 12)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    x_zeroed = x.clone()
    x_zeroed[:, [1, 7]] = 0
    expected = model(x_zeroed, edge_index).detach()
    mask_groups(model, "conv1", [1, 7], kind="features")
    torch.testing.assert_close(model(x, edge_index).detach(), expected)
    assert torch.all(model.conv1.lin.weight[:, [1, 7]] == 0)
    unmask(model, "conv1")
    assert not prune.is_pruned(model)


def test_select_groups_remove_and_keep():
    t = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    assert select_groups(t, 2, "remove", "highest") == [1, 4]
    assert select_groups(t, 2, "remove", "lowest") == [2, 5]
    assert select_groups(t, 3, "keep", "highest") == [0, 2, 5]  # keeps 1, 4, 3
    assert select_groups(t, 3, "keep", "lowest") == [1, 3, 4]  # keeps 2, 5, 0
    assert select_groups(t, 0) == []


def test_scores(lenet):
    l1 = magnitude_scores(lenet, "conv1")
    expected = lenet.conv1.weight.abs().sum(dim=(1, 2, 3)) + lenet.conv1.bias.abs()
    torch.testing.assert_close(l1, expected.detach().double())
    assert torch.equal(random_scores(6, 1), random_scores(6, 1))
    x, y = _images(4), torch.tensor([0, 1, 2, 3])

    def loss_fn(model, batch):
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    taylor = taylor_scores(lenet, "conv1", [(x, y)], loss_fn)
    lenet.zero_grad()
    loss_fn(lenet, (x, y)).backward()
    hand = (lenet.conv1.weight * lenet.conv1.weight.grad).abs().sum(dim=(1, 2, 3))
    hand = hand + (lenet.conv1.bias * lenet.conv1.bias.grad).abs()
    torch.testing.assert_close(taylor, hand.detach().double(), rtol=1e-5, atol=1e-9)
    freq = feature_frequency(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    assert freq.tolist() == [1.0, 0.0, 2.0]


def test_bad_inputs_give_clear_errors(lenet):
    with pytest.raises(InputError, match="unknown layer 'conv7'.*conv1"):
        mask_groups(lenet, "conv7", [0])
    with pytest.raises(InputError, match="k=7 is larger than the number of groups \\(6\\)"):
        select_groups(torch.rand(6), 7)
    with pytest.raises(InputError, match="non-negative"):
        select_groups(torch.rand(6), -1)
    with pytest.raises(InputError, match="group 6 is out of range"):
        mask_groups(lenet, "conv1", [6])
    with pytest.raises(InputError, match="fine-tuning epochs"):
        fine_tune(lenet, (_images(2), torch.arange(2)), epochs=-1)


def test_the_link_split_does_not_depend_on_other_users_of_python_random():
    """PyG draws held-out non-edges from Python's ``random``; a threaded Dask worker's
    scheduler draws from the same process-wide generator. Inside the split's context the draws
    come from a private generator: the same split whoever else draws in between."""
    import random

    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Data
    from torch_geometric.transforms import RandomLinkSplit

    from leafscope.thermo.gnn import _python_random_of_pyg

    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, 40, (150,), generator=gen)
    dst = (src + torch.randint(1, 40, (150,), generator=gen)) % 40
    edges = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1).unique(dim=1)
    data = Data(x=torch.rand(40, 5, generator=gen), edge_index=edges)
    split = RandomLinkSplit(num_val=0.05, num_test=0.1, is_undirected=True,
                            add_negative_train_samples=False)  # fmt: skip

    def test_pairs(interfere: int):
        torch.manual_seed(3)
        with _python_random_of_pyg(3):
            for _ in range(interfere):
                random.random()  # another thread's draw
            return split(data)[2].edge_label_index

    assert torch.equal(test_pairs(0), test_pairs(17))
    torch.manual_seed(3)
    random.seed(3)  # the process-wide generator, as before: the same draws
    assert torch.equal(split(data)[2].edge_label_index, test_pairs(0))
