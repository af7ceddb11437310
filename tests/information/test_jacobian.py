"""input_jacobian: linear closed form, and MC dropout (force_eval=False) under vmap."""

import torch
from torch import nn

from leafscope.information import DataInformation
from leafscope.information.jacobian import input_jacobian


def _dropout_mlp(p: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Dropout(p), nn.Linear(32, 3)).double()


def test_linear_jacobian_is_the_weight_and_chunks_agree():
    model = nn.Linear(7, 4).double()
    x = torch.rand(9, 7, dtype=torch.float64)
    logits, jac = input_jacobian(model, x, chunk_size=2)
    assert torch.equal(jac, model.weight.detach().expand(9, 4, 7))
    torch.testing.assert_close(logits, model(x).detach())


def test_mc_dropout_masks_differ_between_calls_and_samples():
    model = _dropout_mlp(0.5).train()
    x = torch.rand(1, 6, dtype=torch.float64).expand(8, 6)  # one point, eight times
    _, a = input_jacobian(model, x, force_eval=False)
    _, b = input_jacobian(model, x, force_eval=False)
    assert not torch.allclose(a, b)  # fresh masks on every call
    assert not torch.allclose(a[0], a[1])  # and a different mask for every sample
    assert model.training and all(m.training for m in model.modules())  # mode left as it was
    torch.manual_seed(3)
    _, c = input_jacobian(model, x, force_eval=False, chunk_size=3)
    torch.manual_seed(3)
    _, d = input_jacobian(model, x, force_eval=False, chunk_size=3)
    assert torch.equal(c, d)  # reproducible from the global seed


def test_mc_dropout_logits_and_jacobian_share_the_mask():
    """Linear → Dropout → Linear without biases: logits = J x exactly for the mask used."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(5, 40, bias=False), nn.Dropout(0.5), nn.Linear(40, 3, bias=False)
    ).double()
    model.train()
    x = torch.rand(6, 5, dtype=torch.float64)
    logits, jac = input_jacobian(model, x, force_eval=False)
    torch.testing.assert_close(logits, torch.einsum("ncd,nd->nc", jac, x))
    _, jac_eval = input_jacobian(model, x)
    assert not torch.allclose(jac, jac_eval)


def test_dropout_zero_in_training_mode_equals_eval_mode():
    model = _dropout_mlp(0.0).train()
    x = torch.rand(5, 6, dtype=torch.float64)
    la, ja = input_jacobian(model, x, force_eval=False)
    lb, jb = input_jacobian(model, x)
    torch.testing.assert_close(ja, jb)
    torch.testing.assert_close(la, lb)
    ev_train = DataInformation(model, x, force_eval=False).eigenvalues()
    torch.testing.assert_close(ev_train, DataInformation(model, x).eigenvalues())


def test_class_chunks_give_the_same_factor():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 16), nn.GELU(), nn.Linear(16, 23)).double()
    x = torch.rand(5, 10, dtype=torch.float64)
    whole = DataInformation(model, x).eigenvalues()
    chunked = DataInformation(model, x, class_chunk_size=4, chunk_size=2).eigenvalues()
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=0)


def test_bad_chunk_sizes_refused():
    import pytest

    from leafscope.errors import InputError

    with pytest.raises(InputError, match="class_chunk_size must be an integer >= 1"):
        input_jacobian(nn.Linear(3, 2), torch.rand(2, 3), class_chunk_size=0)


def test_parameter_flags_are_restored_and_results_unchanged():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    model[0].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(4, 6, dtype=torch.float64)
    _, jac = input_jacobian(model, x)
    assert [p.requires_grad for p in model.parameters()] == flags
    ref = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x[1])
    torch.testing.assert_close(jac[1], ref, rtol=1e-12, atol=1e-14)
