"""GCN models on a tiny hand-made graph."""

from __future__ import annotations

import torch

from leafscope.models import GCN, GCNLinkPredictor, build_model


def tiny_graph() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(6, 5)
    ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    return x, torch.cat([ring, ring.flip(0)], dim=1)


def test_gcn_shapes_config_and_feature_columns() -> None:
    x, edges = tiny_graph()
    model = build_model("gcn", in_channels=5, num_classes=3, hidden=8).eval()
    assert isinstance(model, GCN)
    assert model(x, edges).shape == (6, 3)
    twin = build_model(**model.config).eval()
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(twin(x, edges), model(x, edges))
    weight = model.conv1.lin.weight
    assert weight.shape == (8, 5)
    # Input feature j is column j: zeroing that column equals zeroing feature j in x.
    x_cut = x.clone()
    x_cut[:, 2] = 0
    expected = model(x_cut, edges)
    with torch.no_grad():
        weight[:, 2] = 0
    torch.testing.assert_close(model(x, edges), expected)


def test_gcn_dropout_only_in_train_mode() -> None:
    x, edges = tiny_graph()
    model = build_model("gcn", in_channels=5, num_classes=3, dropout=0.5)
    model.eval()
    torch.testing.assert_close(model(x, edges), model(x, edges))
    model.train()
    torch.manual_seed(0)
    a = model(x, edges)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x, edges))


def test_link_predictor_decodes_dot_products() -> None:
    x, edges = tiny_graph()
    model = build_model("gcn-link", in_channels=5, hidden=8, embedding_dim=4).eval()
    assert isinstance(model, GCNLinkPredictor)
    z = model(x, edges)
    assert z.shape == (6, 4)
    pairs = torch.tensor([[0, 2, 5], [1, 4, 5]])
    expected = torch.stack([z[0] @ z[1], z[2] @ z[4], z[5] @ z[5]])
    torch.testing.assert_close(model.decode(z, pairs), expected)
    assert build_model(**model.config).config == model.config
