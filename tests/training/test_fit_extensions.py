"""FitConfig, pluggable losses, full-batch graphs, seeded augmentations, frozen parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from leafscope.errors import CheckpointError, InputError
from leafscope.models import build_model
from leafscope.training import (
    Callback,
    FitConfig,
    GraphBatch,
    HorizontalFlip,
    RandomCrop,
    evaluate,
    fit,
    link_prediction_loss,
    parse_augment,
    sample_negative_edges,
)


def blobs(n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (torch.randn(2, 64, generator=g) * 2.0)[y] + 0.5 * torch.randn(n, 64, generator=g)
    return x.reshape(n, 1, 8, 8), y


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", num_classes=2, image_size=8, hidden=[8])


def graph(seed: int = 0) -> Data:
    """60 nodes in 3 classes; features 0..2 carry the class; edges mostly within a class."""
    gen = torch.Generator().manual_seed(seed)
    n, c = 60, 3
    y = torch.arange(n) % c
    x = (torch.rand(n, 10, generator=gen) < 0.1).float()
    x[torch.arange(n), y] = 1.0
    src = torch.randint(0, n, (150,), generator=gen)
    dst = (src + c * torch.randint(1, 5, (150,), generator=gen)) % n
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1).unique(dim=1)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][:24], masks[1][24:36], masks[2][36:] = True, True, True
    return Data(x=x, y=y, edge_index=edge_index, train_mask=masks[0], val_mask=masks[1],
                test_mask=masks[2])  # fmt: skip


class StopAt(Callback):
    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_batch_end(self, step, model, optimizer, loss) -> None:
        if step == self.step:
            raise KeyboardInterrupt


def params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_config_object_and_keywords_are_the_same_run() -> None:
    x, y = blobs()
    a, b, c = mlp(), mlp(), mlp()
    fit(a, (x, y), epochs=2, lr=0.1, momentum=0.9, batch_size=16, seed=4, progress=False)
    cfg = FitConfig(epochs=2, lr=0.1, momentum=0.9, batch_size=16, seed=4, progress=False)
    fit(b, (x, y), None, cfg)
    fit(c, (x, y), None, FitConfig(epochs=2, lr=0.5), lr=0.1, momentum=0.9, batch_size=16,
        seed=4, progress=False)  # fmt: skip
    assert torch.equal(params(a), params(b)) and torch.equal(params(a), params(c))
    with pytest.raises(InputError, match="unknown fit setting.*'learning_rate'"):
        fit(mlp(), (x, y), epochs=1, learning_rate=0.1)
    with pytest.raises(InputError, match="needs epochs"):
        fit(mlp(), (x, y))
    with pytest.raises(InputError, match="resume=True needs out_dir"):
        FitConfig(epochs=1, resume=True).validate()


def test_node_classification_is_one_full_batch_step_per_epoch_like_a_plain_loop() -> None:
    data = graph()
    torch.manual_seed(0)
    model = build_model("gcn", in_channels=10, num_classes=3, hidden=8)
    torch.manual_seed(0)
    hand = build_model("gcn", in_channels=10, num_classes=3, hidden=8)
    result = fit(model, data, data, epochs=15, optimizer="adam", lr=0.05, weight_decay=5e-4,
                 seed=2, progress=False)  # fmt: skip
    torch.manual_seed(2)  # what fit does; then the textbook loop with dropout active
    opt = torch.optim.Adam(hand.parameters(), lr=0.05, weight_decay=5e-4)
    for _ in range(15):
        opt.zero_grad()
        out = hand(data.x, data.edge_index)
        loss = nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()
    torch.testing.assert_close(params(model), params(hand), rtol=0, atol=1e-6)
    assert result.steps == 15 and len(result.history) == 15
    hand.eval()
    pred = hand(data.x, data.edge_index).argmax(1)
    want = float((pred[data.val_mask] == data.y[data.val_mask]).float().mean())
    assert result.history[-1]["val_accuracy"] == pytest.approx(want)
    test_loss, test_acc = evaluate(model, GraphBatch(data, data.test_mask))
    logits = hand(data.x, data.edge_index)[data.test_mask].detach()
    assert test_loss == pytest.approx(
        float(nn.functional.cross_entropy(logits, data.y[data.test_mask])), rel=1e-5
    )
    with pytest.raises(InputError, match="no train_mask"):
        fit(model, Data(x=data.x, y=data.y, edge_index=data.edge_index), epochs=1)


def test_link_prediction_learns_and_resumes_exactly(tmp_path: Path) -> None:
    data = graph()
    data.edge_label_index = data.edge_index
    kwargs = dict(epochs=12, optimizer="adam", lr=0.02, seed=1, loss_fn=link_prediction_loss,
                  progress=False, checkpoint_every_steps=5)  # fmt: skip

    def model() -> nn.Module:
        torch.manual_seed(0)
        return build_model("gcn-link", in_channels=10, hidden=16, embedding_dim=8)

    full = model()
    ref = fit(full, data, out_dir=tmp_path / "a", **kwargs)
    assert ref.history[-1]["train_loss"] < ref.history[0]["train_loss"]
    assert ref.history[-1]["train_accuracy"] is not None
    assert ref.history[-1]["train_accuracy"] > 0.6
    with pytest.raises(KeyboardInterrupt):
        fit(model(), data, out_dir=tmp_path / "b", callbacks=[StopAt(7)], **kwargs)
    resumed = model()
    fit(resumed, data, out_dir=tmp_path / "b", callbacks=[StopAt(None)], resume=True, **kwargs)
    assert torch.equal(params(full), params(resumed))


def test_negative_edges_avoid_edges_and_self_loops() -> None:
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    neg = sample_negative_edges(edge_index, 5, 200, torch.Generator().manual_seed(0))
    assert neg.shape == (2, 200)
    pairs = set(map(tuple, neg.T.tolist()))
    assert not pairs & {(0, 1), (1, 2), (2, 3), (3, 0)}
    assert all(u != v for u, v in pairs)
    assert len(pairs) == 5 * 4 - 4  # every one of the 16 free ordered pairs shows up
    full = torch.tensor([[i, j] for i in range(3) for j in range(3) if i != j]).T
    with pytest.raises(InputError, match="complete"):
        sample_negative_edges(full, 3, 1)


def test_custom_loss_drives_training_and_validation() -> None:
    x, y = blobs()
    calls = []

    def hinge(model, batch):  # a bare scalar: no accuracy
        calls.append(len(batch[0]))
        logits = model(batch[0])
        margin = logits.gather(1, batch[1][:, None]) - logits.gather(1, 1 - batch[1][:, None])
        return torch.relu(1 - margin).mean()

    model = mlp()
    result = fit(model, (x[:80], y[:80]), (x[80:], y[80:]), epochs=3, lr=0.1, batch_size=40,
                 loss_fn=hinge, progress=False)  # fmt: skip
    rec = result.history[-1]
    assert rec["train_accuracy"] is None and rec["val_accuracy"] is None
    assert calls[:2] == [40, 40] and 40 in calls  # train batches, then the 40 val points
    assert rec["train_loss"] < result.history[0]["train_loss"]
    with pytest.raises(InputError, match="loss_fn must return"):
        fit(mlp(), (x, y), epochs=1, loss_fn=lambda m, b: "nope", progress=False)


def test_frozen_parameters_stay_put() -> None:
    x, y = blobs()
    model = mlp()
    for p in model.fc1.parameters():
        p.requires_grad_(False)
    before = model.fc1.weight.detach().clone()
    head = model.fc2.weight.detach().clone()
    fit(model, (x, y), epochs=1, lr=0.1, batch_size=20, progress=False)
    assert torch.equal(model.fc1.weight, before) and not torch.equal(model.fc2.weight, head)


def test_crop_is_a_shifted_window_of_the_padded_image_and_flip_mirrors() -> None:
    x = torch.rand(16, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    crop = RandomCrop(padding=2)
    out = crop(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, crop(x, torch.Generator().manual_seed(1)))
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(16):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 6])]  # fmt: skip
        assert hits, f"image {i} is not a window of its padded image"
        shifts.add(hits[0])
    assert len(shifts) > 3  # offsets differ between images
    assert torch.equal(RandomCrop(0)(x, torch.Generator()), x)
    flipped = HorizontalFlip()(x, torch.Generator().manual_seed(2))
    which = [torch.equal(f, xi.flip(-1)) for f, xi in zip(flipped, x, strict=True)]
    assert all(w or torch.equal(f, xi) for w, f, xi in zip(which, flipped, x, strict=True))
    assert 0 < sum(which) < 16
    assert torch.equal(HorizontalFlip(1.0)(x, torch.Generator()), x.flip(-1))
    with pytest.raises(InputError, match="image batches"):
        crop(x.flatten(1), torch.Generator())
    with pytest.raises(InputError, match="unknown augmentation 'blur'"):
        parse_augment("crop,blur")
    assert parse_augment("crop, flip", crop_padding=3) == [RandomCrop(3), HorizontalFlip()]


def test_augmented_run_resumes_exactly_and_records_its_augmentations(tmp_path: Path) -> None:
    x, y = blobs()
    kwargs = dict(
        epochs=2,
        lr=0.1,
        momentum=0.9,
        batch_size=20,
        seed=5,
        progress=False,
        augment=parse_augment("crop,flip", crop_padding=1),
        checkpoint_every_steps=2,
    )
    full, plain = mlp(), mlp()
    fit(full, (x, y), out_dir=tmp_path / "a", **kwargs)
    fit(plain, (x, y), **{**kwargs, "augment": ()})
    assert not torch.equal(params(full), params(plain))
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), (x, y), out_dir=tmp_path / "b", callbacks=[StopAt(9)], **kwargs)
    resumed = mlp(seed=3)
    fit(resumed, (x, y), out_dir=tmp_path / "b", callbacks=[StopAt(None)], resume=True, **kwargs)
    assert torch.equal(params(full), params(resumed))
    with pytest.raises(CheckpointError, match="augment was"):
        fit(mlp(), (x, y), out_dir=tmp_path / "b", callbacks=[StopAt(None)], resume=True,
            **{**kwargs, "augment": parse_augment("flip"), "epochs": 3})  # fmt: skip
