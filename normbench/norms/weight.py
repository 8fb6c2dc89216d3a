"""Weight normalization (Salimans & Kingma 2016): the reparametrization and its data-dependent init."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


def is_weight_layer(module: nn.Module) -> bool:
    """Conv and linear layers: the layers weight norm reparameterizes."""
    return isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))


def apply_weight_norm(model: nn.Module) -> nn.Module:
    r"""Reparameterize every conv and linear weight as :math:`w = g\,v / \lVert v \rVert`.

    Uses ``torch.nn.utils.parametrizations.weight_norm`` with ``dim=0``: one scale :math:`g`
    per output unit, the norm taken over each output unit's fan-in. At creation
    :math:`g = \lVert v \rVert`, so the function the model computes is unchanged.
    """
    for module in list(model.modules()):
        if is_weight_layer(module) and not parametrize.is_parametrized(module, "weight"):
            weight_norm(module, name="weight", dim=0)
    return model


def weight_normed_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_weight_layer(m) and parametrize.is_parametrized(m, "weight")]


SKIP_DATA_INIT = "skip_weight_norm_data_init"
"""Set this attribute on a layer to keep :func:`weight_norm_data_init` off it (a recurrent
matrix, applied many times per forward pass to a state that starts at zero)."""


@torch.no_grad()
def weight_norm_data_init(model: nn.Module, inputs, eps: float = 1e-8) -> None:
    r"""Data-dependent initialization of weight norm (Salimans & Kingma 2016, section 3).

    One forward pass of ``inputs`` visits the weight-normalized layers in order; at each,
    with :math:`t` its pre-activation and :math:`\mu, \sigma` the mean and standard deviation of
    :math:`t` per output unit (over the batch and every position), it sets

    .. math::
        g \leftarrow g / \sigma, \qquad b \leftarrow (b - \mu) / \sigma

    and passes on :math:`(t - \mu)/\sigma`, which is what the layer now computes, so later
    layers are initialized on the statistics they will see. A layer without bias (one followed
    by mean-only batch norm, which supplies the shift) only gets its scale set. ``inputs`` is
    what ``model`` takes (a tensor, or a tuple of positional arguments).

    Layers marked with the attribute :data:`SKIP_DATA_INIT` keep their initialization: the
    recurrent matrix of an LSTM acts on a zero state at the first step and is applied at every
    step, so one pass gives it no statistics to initialize from (Salimans & Kingma note that
    the method does not carry over to recurrent models).
    """
    layers = [m for m in weight_normed_layers(model) if not getattr(m, SKIP_DATA_INIT, False)]
    if not layers:
        return

    def init_layer(module: nn.Module, _args, out: torch.Tensor) -> torch.Tensor:
        reduce_dims = [d for d in range(out.dim()) if d != 1]
        mean = out.mean(dim=reduce_dims)
        std = out.std(dim=reduce_dims, unbiased=False) + eps
        g = module.parametrizations.weight.original0
        g.div_(std.view(g.shape))
        shape = (1, -1) + (1,) * (out.dim() - 2)
        if module.bias is not None:
            module.bias.sub_(mean).div_(std)
            return (out - mean.view(shape)) / std.view(shape)
        return out / std.view(shape)

    handles = [layer.register_forward_hook(init_layer) for layer in layers]
    was_training = model.training
    try:
        model.train()
        model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
