"""Every normalization layer, the ``make_norm`` factory, and weight-norm application.

Shapes follow PyTorch: ``dims`` is the number of spatial dimensions of the features a layer
normalizes, 0 for ``(N, C)``, 1 for ``(N, C, L)``, 2 for ``(N, C, H, W)``.

Where PyTorch has a fused op for the maths (``F.batch_norm``, ``F.group_norm``,
``F.layer_norm``, ``weight_norm``) we use it; our own layers are the ones the papers need and
PyTorch lacks (mean-only batch norm, data-dependent initialisation of weight norm, the
per-time-step statistics of recurrent batch norm).

Recurrent models ask :func:`make_recurrent_norm` instead of :func:`make_norm`: their layers take
the time step as a second argument, ``norm(x, t)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from normbench.errors import ConfigError

NORM_DESCRIPTIONS = {
    "none": "no normalization",
    "batch": "batch norm (Ioffe & Szegedy 2015): batch statistics in training, population statistics in eval",
    "group": "group norm (Wu & He 2018): statistics per sample over groups of channels",
    "layer": "layer norm (Ba et al. 2016): statistics per sample over all features",
    "instance": "instance norm (Ulyanov et al. 2016): statistics per sample and channel over positions",
    "weight": "weight norm (Salimans & Kingma 2016): w = g v/||v||, data-dependent init, optional mean-only BN",
}
NORM_KINDS = tuple(NORM_DESCRIPTIONS)

# The options each kind takes. ``data_init`` belongs to weight norm's configuration but acts on
# the whole model (see ``weight_norm_data_init``), so make_norm accepts and ignores it.
_OPTIONS = {
    "none": set(),
    "batch": {"momentum", "eps", "affine", "mean_only", "gamma_init"},
    "group": {"groups", "eps", "affine"},
    "layer": {"eps", "affine"},
    "instance": {"eps", "affine"},
    "weight": {"mean_only", "momentum", "data_init"},
}

_BATCH_NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class MeanOnlyBatchNorm(nn.Module):
    r"""Mean-only batch normalization (Salimans & Kingma, 2016, section 2.2).

    .. math::
        y = x - \mu + \beta

    In training :math:`\mu` is the mean of each channel over the batch and every spatial
    position, i.e. over all dims but dim 1; a running mean is kept with ``momentum`` as in
    :class:`torch.nn.BatchNorm1d`. In eval the running mean replaces the batch mean, so the
    output depends on the input alone. The variance is never divided out: the paper pairs this
    layer with weight normalization, which already controls the scale.

    Args:
        num_features: C, the number of channels.
        momentum: weight of the newest batch mean in the running mean.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            reduce_dims = [d for d in range(x.dim()) if d != 1]
            mean = x.mean(dim=reduce_dims)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
        else:
            mean = self.running_mean
        return x - mean.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"


class LayerNorm(nn.Module):
    r"""Layer normalization (Ba, Kiros & Hinton, 2016) with one gain and bias per channel.

    .. math::
        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta

    The mean and (biased) variance are taken per sample over every non-batch dim: over the
    C features of an ``(N, C)`` input, over C and all positions of ``(N, C, *)`` features, which
    is group norm with one group, as the GN paper defines LN for convolutional features.
    :math:`\gamma, \beta` have C entries. Train and eval behave the same.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class RecurrentBatchNorm(nn.Module):
    r"""Batch normalization with statistics per time step (Cooijmans et al., 2016).

    .. math::
        y_t = \frac{x_t - \mathrm{E}[x_t]}{\sqrt{\mathrm{Var}[x_t] + \epsilon}} \cdot \gamma + \beta

    In training the mean and (biased) variance of step :math:`t` are taken per feature over the
    batch only, never over time: each time step has its own statistics, and its own running
    (population) mean and unbiased variance, updated with ``momentum`` as in
    :class:`torch.nn.BatchNorm1d`. :math:`\gamma` and :math:`\beta` have one entry per feature and
    are shared by all time steps. :math:`\gamma` starts at ``gamma_init`` (0.1, the paper's value:
    a small gain keeps the gates out of the saturated range of the sigmoid and tanh);
    ``center=False`` drops :math:`\beta`, as the paper does for the normalized input and
    recurrent terms of an LSTM, whose gates have a bias of their own.

    The layer holds population statistics for ``max_steps`` time steps, the longest training
    length :math:`T_{max}`; training on a later step is an error. In eval the population
    statistics of step :math:`t` are used for :math:`t < T_{max}`, and those of the last step
    seen in training for every later step (the paper's rule for test sequences longer than the
    training ones). Averaging statistics over time instead "severely degrades performance".

    Args:
        num_features: C, the number of features.
        max_steps: :math:`T_{max}`, the number of time steps that get their own statistics.
        eps: added to the variance.
        momentum: weight of the newest batch in the running statistics.
        affine: learn :math:`\gamma` (and :math:`\beta` when ``center``).
        center: learn :math:`\beta`.
        gamma_init: the initial :math:`\gamma`.

    Shape:
        - Input: :math:`(N, C)`, one time step (``t`` is its index), or :math:`(N, T, C)`, the
          steps ``t`` to ``t + T - 1`` at once (one fused call for a term that does not depend on
          the recurrence, such as :math:`W_x x_t`).
        - Output: same shape as the input.
    """

    def __init__(self, num_features: int, max_steps: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, center: bool = True, gamma_init: float = 0.1):
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be at least 1")
        self.num_features, self.max_steps = num_features, max_steps
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.full((num_features,), float(gamma_init))) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine and center else None
        self.register_buffer("running_mean", torch.zeros(max_steps, num_features))
        self.register_buffer("running_var", torch.ones(max_steps, num_features))
        # T_max: the number of leading steps that have population statistics (kept on the device,
        # so that neither training nor evaluation needs a host-device synchronisation).
        self.register_buffer("steps_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, t: int = 0) -> torch.Tensor:
        steps = 1 if x.dim() == 2 else x.shape[1]
        flat = x if x.dim() == 2 else x.reshape(x.shape[0], steps * self.num_features)
        if self.training:
            if t + steps > self.max_steps:
                raise ValueError(
                    f"RecurrentBatchNorm holds statistics for {self.max_steps} time steps and got step "
                    f"{t + steps - 1} in training; build it with max_steps >= the training length"
                )
            mean = self.running_mean[t:t + steps].view(-1)  # views: batch_norm updates them in place
            var = self.running_var[t:t + steps].view(-1)
            self.steps_tracked.clamp_(min=t + steps)
            training = True
        else:
            last = (self.steps_tracked - 1).clamp(min=0)
            index = torch.arange(t, t + steps, device=x.device).clamp(max=last)
            mean = self.running_mean.index_select(0, index).view(-1)
            var = self.running_var.index_select(0, index).view(-1)
            training = False
        if x.dim() == 2:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training, self.momentum, self.eps)
        y = F.batch_norm(flat, mean, var, None, None, training, self.momentum, self.eps).view_as(x)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, max_steps={self.max_steps}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, center={self.bias is not None}")


class StepNorm(nn.Module):
    r"""A normalization without time dependence, applied alike at every time step.

    Wraps a layer built by :func:`make_norm` for ``(N, C)`` features (layer norm: Ba et al.
    apply it "unchanged at every time step"; ``none``: the identity) so that it takes the
    recurrent calling convention ``norm(x, t)`` and inputs of shape :math:`(N, C)` or
    :math:`(N, T, C)`, with statistics over the C features of each sample and step.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.is_identity = isinstance(layer, nn.Identity)

    def forward(self, x: torch.Tensor, t: int = 0) -> torch.Tensor:
        if self.is_identity:
            return x
        if x.dim() == 2:
            return self.layer(x)
        return self.layer(x.reshape(-1, x.shape[-1])).view_as(x)


# The norms that have a meaning inside a recurrent cell, and the options each takes there.
_RECURRENT_OPTIONS = {
    "none": set(),
    "batch": {"momentum", "eps", "affine", "gamma_init", "mean_only"},
    "layer": {"eps", "affine"},
    "weight": {"data_init", "mean_only", "momentum"},
}


def make_recurrent_norm(kind: str, num_features: int, max_steps: int, center: bool = True,
                        **options) -> nn.Module:
    """The normalization ``kind`` for one term of a recurrent cell, called as ``norm(x, t)``.

    ``batch`` gives a :class:`RecurrentBatchNorm` (statistics per time step, ``gamma_init``
    defaulting to Cooijmans et al.'s 0.1; ``center=False`` drops :math:`\\beta`); ``layer`` a
    :class:`LayerNorm` applied alike at every step (gain and bias, Ba et al.); ``none`` and
    ``weight`` the identity (weight norm acts on the cell's matrices, see
    :func:`apply_weight_norm`). ``group`` and ``instance`` have no meaning for the
    ``(N, C)`` features of a cell, and mean-only batch norm is not defined there: both raise
    :class:`~normbench.errors.ConfigError`.
    """
    if kind not in _RECURRENT_OPTIONS:
        if kind in _OPTIONS:
            raise ConfigError(
                f"norm={kind} has no meaning in a recurrent cell (its statistics need channel groups or "
                f"positions, and a cell's features are one vector per step); use norm=none, batch, layer or weight"
            )
        raise ConfigError(f"unknown norm '{kind}'; known norms: {', '.join(NORM_KINDS)}")
    opts = dict(options)
    unknown = set(opts) - _RECURRENT_OPTIONS[kind]
    if unknown:
        allowed = ", ".join(sorted(_RECURRENT_OPTIONS[kind])) or "none"
        raise ConfigError(
            f"norm '{kind}' in a recurrent cell takes no option {', '.join(sorted(map(repr, unknown)))}; its options: {allowed}"
        )
    if opts.get("mean_only", False):
        raise ConfigError(f"norm={kind} norm.mean_only=true is not defined for recurrent cells; "
                          "use norm.mean_only=false (or a feed-forward model)")
    if kind == "batch":
        gamma_init = opts.get("gamma_init")
        gamma_init = 0.1 if gamma_init is None else gamma_init
        layer = RecurrentBatchNorm(num_features, max_steps, eps=opts.get("eps", 1e-5),
                                   momentum=opts.get("momentum", 0.1), affine=opts.get("affine", True),
                                   center=center)
        _init_gamma(layer, gamma_init, kind)
        return layer
    if kind == "layer":
        return StepNorm(make_norm("layer", num_features, 0, **opts))
    return StepNorm(nn.Identity())


def _take(kind: str, options: dict) -> dict:
    unknown = set(options) - _OPTIONS[kind]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise ConfigError(
            f"norm '{kind}' takes no option {', '.join(sorted(map(repr, unknown)))}; its options: {allowed}"
        )
    return options


def make_norm(kind: str, num_features: int, dims: int, **options) -> nn.Module:
    """Build the normalization layer ``kind`` for features of ``num_features`` channels.

    Args:
        kind: one of :data:`NORM_KINDS`.
        num_features: C, the channel (feature) count.
        dims: spatial dims of the input: 0 for ``(N, C)``, 1 for ``(N, C, L)``, 2 for
            ``(N, C, H, W)``.
        **options: the kind's options: ``batch``: ``momentum``, ``eps``, ``affine``,
            ``mean_only`` (subtract the mean only, :class:`MeanOnlyBatchNorm`), ``gamma_init``
            (the initial :math:`\\gamma`; ``None`` keeps PyTorch's 1); ``group``:
            ``groups``, ``eps``, ``affine``; ``layer`` and ``instance``: ``eps``, ``affine``;
            ``weight``: ``mean_only`` (add mean-only batch norm after the weight-normalized
            layer), ``momentum``, ``data_init`` (acts on the model, see
            :func:`weight_norm_data_init`).

    Returns:
        The layer; ``nn.Identity`` for ``none`` and for ``weight`` without mean-only BN (weight
        norm acts on the weights: see :func:`apply_weight_norm`).

    Raises:
        ValueError (:class:`~normbench.errors.ConfigError`): an unknown kind or option, a group
        count that does not divide ``num_features``, or instance norm on features that have no
        positions.
    """
    if kind not in _OPTIONS:
        raise ConfigError(f"unknown norm '{kind}'; known norms: {', '.join(NORM_KINDS)}")
    if dims not in _BATCH_NORMS:
        raise ConfigError(f"dims must be 0, 1, 2 or 3, got {dims}")
    opts = _take(kind, dict(options))
    eps = opts.get("eps", 1e-5)
    affine = opts.get("affine", True)
    if kind == "none":
        return nn.Identity()
    if kind in ("batch", "weight") and opts.get("mean_only", False):
        if opts.get("gamma_init") is not None:
            raise ConfigError(f"norm.gamma_init={opts['gamma_init']} needs a gamma, and mean-only batch norm has "
                              "none; drop norm.gamma_init or set norm.mean_only=false")
        return MeanOnlyBatchNorm(num_features, momentum=opts.get("momentum", 0.1))
    if kind == "weight":
        return nn.Identity()
    if kind == "batch":
        layer = _BATCH_NORMS[dims](num_features, eps=eps, momentum=opts.get("momentum", 0.1), affine=affine)
        _init_gamma(layer, opts.get("gamma_init"), kind)
        return layer
    if kind == "group":
        groups = opts.get("groups", 32)
        if not isinstance(groups, int) or groups < 1 or num_features % groups:
            raise ConfigError(
                f"norm.groups={groups} does not divide the {num_features} channels of a layer; "
                f"choose a divisor of {num_features} (e.g. {_divisors_hint(num_features)})"
            )
        return nn.GroupNorm(groups, num_features, eps=eps, affine=affine)
    if kind == "layer":
        return LayerNorm(num_features, eps=eps, affine=affine)
    # instance
    if dims == 0:
        raise ConfigError(
            "norm=instance normalizes each channel over its positions, and (N, C) features have "
            "none; use a convolutional model (model=cnn) or norm=layer"
        )
    # GroupNorm with one channel per group is instance norm with per-channel affine, fused.
    return nn.GroupNorm(num_features, num_features, eps=eps, affine=affine)


def _init_gamma(layer: nn.Module, gamma_init, kind: str) -> None:
    """Set a norm layer's initial gain :math:`\\gamma` (``None``: leave the layer's default)."""
    if gamma_init is None:
        return
    if isinstance(gamma_init, bool) or not isinstance(gamma_init, (int, float)) or not gamma_init > 0:
        raise ConfigError(f"norm.gamma_init={gamma_init} must be a positive number (Cooijmans et al. use 0.1)")
    if getattr(layer, "weight", None) is None:
        raise ConfigError(f"norm.gamma_init={gamma_init} needs a gamma, and norm={kind} with affine=false has "
                          "none; drop norm.gamma_init or set norm.affine=true")
    with torch.no_grad():
        layer.weight.fill_(float(gamma_init))


def _divisors_hint(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)


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
