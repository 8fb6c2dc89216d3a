"""A pack's members folded into the channels: one grouped convolution for M members' convolutions.

``torch.func.vmap`` runs any model packed, but it pays its own overhead on every operation, and
tiny models are nothing but operations. Most feed-forward layers have an exact folded form
instead: lay the members' activations side by side in the channel dimension, ``(B, M*C, ...)``
member-major, and

- a convolution of M members is one convolution with ``groups * M`` (its weights ``(M*Cout, ...)``);
- a linear layer is one batched matrix product over the member dimension;
- batch norm over ``M*C`` channels keeps each member's own batch statistics and running averages
  (a channel's statistics never mix channels), and group norm with ``M*G`` groups each member's
  groups (groups are runs of adjacent channels): layer norm is group norm with M groups;
- activations, pooling and flattening act per channel or per element, so they need nothing.

:func:`fold` builds the folded model when every layer has such a form (:data:`RULES`, keyed by
layer type: one rule per layer, none per norm name); otherwise the pack keeps vmap. The model's
own ``forward`` code runs unchanged on the folded activations, so :class:`~normbench.training.
packing.Pack` checks the folded outputs against vmap's on the first batch before it trusts them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from normbench.norms.layers import LayerNorm, RMSNorm

# Layers that act per element or per channel: on member-major folded channels they are already
# every member's layer.
_CHANNELWISE = (nn.Identity, nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


class Folded(nn.Module):
    """One layer of M members, run on folded activations with the members' stacked tensors.

    Args:
        layer: the member layer it replaces (its hyper-parameters: stride, eps, momentum, ...).
        rule: ``rule(layer, get, x, M)``; ``get(name)`` is the stacked ``(M, *shape)`` tensor
            of the layer's parameter or buffer ``name`` (None when absent).
        prefix: the layer's name in the model, before its tensors' names.
        tensors: the pack's stacked tensors by full name (the optimizer's leaves and buffers).
        members: M.
    """

    def __init__(self, layer: nn.Module, rule: Callable, prefix: str, tensors: dict[str, torch.Tensor],
                 members: int):
        super().__init__()
        # ``layer`` is a submodule: ``train()`` and ``eval()`` on the folded model reach it
        self.layer, self.rule, self.prefix, self.tensors, self.members = layer, rule, prefix, tensors, members
        self.training = layer.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rule(self.layer, lambda name: self.tensors.get(self.prefix + name), x, self.members)


def _conv(layer, get, x, M):
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    bias = get("bias")
    return conv(x, get("weight").flatten(0, 1), None if bias is None else bias.flatten(), layer.stride,
                layer.padding, layer.dilation, layer.groups * M)


def _linear(layer, get, x, M):
    xs = x.unflatten(-1, (M, layer.in_features))  # (..., M, F)
    out = torch.einsum("...mf,mkf->...mk", xs, get("weight"))
    bias = get("bias")
    return (out if bias is None else out + bias).flatten(-2)


def _batch_norm(layer, get, x, M):
    # nn.BatchNorm's own choice of statistics, on M*C channels
    mean, var, tracked = get("running_mean"), get("running_var"), get("num_batches_tracked")
    if layer.training and layer.track_running_stats and tracked is not None:
        tracked.add_(1)
    use_batch = layer.training or (mean is None and var is None)
    keep = not layer.training or layer.track_running_stats
    weight, bias = get("weight"), get("bias")
    return F.batch_norm(x, mean.view(-1) if keep and mean is not None else None,
                        var.view(-1) if keep and var is not None else None,
                        None if weight is None else weight.flatten(), None if bias is None else bias.flatten(),
                        use_batch, layer.momentum, layer.eps)


def _group_norm(layer, get, x, M):
    weight, bias = get("weight"), get("bias")
    return F.group_norm(x, layer.num_groups * M, None if weight is None else weight.flatten(),
                        None if bias is None else bias.flatten(), layer.eps)


def _layer_norm(layer, get, x, M):
    # normbench's LayerNorm is group norm with one group per sample (its 2-D form, layer_norm over
    # the C features, is the same): M members are M groups
    weight, bias = get("weight"), get("bias")
    return F.group_norm(x, M, None if weight is None else weight.flatten(), None if bias is None else bias.flatten(),
                        layer.eps)


def _rms_norm(layer, get, x, M):
    xs = x.unflatten(1, (M, -1))
    y = F.rms_norm(xs, xs.shape[2:], eps=layer.eps)
    weight = get("weight")
    if weight is not None:
        y = y * weight.view((1, M, -1) + (1,) * (x.dim() - 2))
    return y.flatten(1, 2)


def _as_is(layer, get, x, M):
    return layer(x)


#: Layer type -> (its folded rule, the names of the tensors it may own). Exact types: a subclass
#: (Batch Renorm, ghost batch norm) computes something else and keeps vmap.
RULES: dict[type, tuple[Callable, frozenset[str]]] = {
    nn.Conv1d: (_conv, frozenset({"weight", "bias"})),
    nn.Conv2d: (_conv, frozenset({"weight", "bias"})),
    nn.Linear: (_linear, frozenset({"weight", "bias"})),
    nn.BatchNorm1d: (_batch_norm, frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})),
    nn.BatchNorm2d: (_batch_norm, frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})),
    nn.GroupNorm: (_group_norm, frozenset({"weight", "bias"})),
    LayerNorm: (_layer_norm, frozenset({"weight", "bias"})),
    RMSNorm: (_rms_norm, frozenset({"weight"})),
    nn.Flatten: (_as_is, frozenset()),
    **{t: (_as_is, frozenset()) for t in _CHANNELWISE},
}


def _foldable(layer: nn.Module) -> bool:
    entry = RULES.get(type(layer))
    if entry is None:
        return False
    own = {n for n, _ in layer.named_parameters(recurse=False)} | {n for n, _ in layer.named_buffers(recurse=False)}
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.padding_mode != "zeros":
        return False
    if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
        return False
    return own <= entry[1] and not layer._forward_hooks and not layer._forward_pre_hooks


def fold(model: nn.Module, tensors: dict[str, torch.Tensor], members: int) -> nn.Module | None:
    """``model``'s folded form over the stacked ``tensors`` of ``members`` members, or None when a
    layer has no folded rule (the pack then keeps vmap)."""
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    if not all(name and _foldable(m) for name, m in leaves):
        return None
    folded = copy.deepcopy(model).to("meta")
    for name, _ in leaves:
        parent, _, leaf = name.rpartition(".")
        owner = folded.get_submodule(parent) if parent else folded
        layer = owner.get_submodule(leaf)
        setattr(owner, leaf, Folded(layer, RULES[type(layer)][0], f"{name}.", tensors, members))
    return folded


def fold_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stacked ``(M, B, C, ...)`` inputs as folded ``(B, M*C, ...)`` ones (member-major)."""
    return x.transpose(0, 1).flatten(1, 2)


def unfold_outputs(out: torch.Tensor, members: int) -> torch.Tensor:
    """Folded ``(B, M*K, ...)`` outputs as stacked ``(M, B, K, ...)`` ones."""
    return out.unflatten(1, (members, -1)).transpose(0, 1)
