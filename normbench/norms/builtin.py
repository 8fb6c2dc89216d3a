"""The built-in norms' registry entries: one :class:`~normbench.norms.Norm` each."""

from __future__ import annotations

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.layers import (
    BatchRenorm,
    GhostBatchNorm,
    LayerNorm,
    MeanOnlyBatchNorm,
    RMSNorm,
)
from normbench.norms.recurrent import RecurrentBatchNorm, StepNorm
from normbench.norms.registry import Norm, register_norm
from normbench.norms.weight import apply_weight_norm, weight_norm_data_init

_BATCH_NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_BN_LAYERS = (nn.modules.batchnorm._NormBase, MeanOnlyBatchNorm, RecurrentBatchNorm)
# The batch-statistics layers evaluated with population statistics (instance norm's base excluded).
_BN_POPULATION = (nn.modules.batchnorm._BatchNorm, MeanOnlyBatchNorm, RecurrentBatchNorm)


def _init_gamma(layer: nn.Module, gamma_init, kind: str) -> nn.Module:
    """Set a norm layer's initial gain :math:`\\gamma` (``None``: leave the layer's default)."""
    if gamma_init is None:
        return layer
    if getattr(layer, "weight", None) is None:
        raise ConfigError(f"norm.gamma_init={gamma_init} needs a gamma, and norm={kind} with affine=false has "
                          "none; drop norm.gamma_init or set norm.affine=true")
    with torch.no_grad():
        layer.weight.fill_(float(gamma_init))
    return layer


def _mean_only(num_features: int, momentum: float = 0.1, gamma_init=None) -> MeanOnlyBatchNorm:
    if gamma_init is not None:
        raise ConfigError(f"norm.gamma_init={gamma_init} needs a gamma, and mean-only batch norm has none; drop "
                          "norm.gamma_init or set norm.mean_only=false")
    return MeanOnlyBatchNorm(num_features, momentum=momentum)


def _no_mean_only(kind: str, options: dict) -> dict:
    if options.pop("mean_only", False):
        raise ConfigError(f"norm={kind} norm.mean_only=true is not defined for recurrent cells; "
                          "use norm.mean_only=false (or a feed-forward model)")
    return options


def _batch(num_features, dims, momentum=0.1, eps=1e-5, affine=True, mean_only=False, gamma_init=None):
    if mean_only:
        return _mean_only(num_features, momentum, gamma_init)
    layer = _BATCH_NORMS[dims](num_features, eps=eps, momentum=momentum, affine=affine)
    return _init_gamma(layer, gamma_init, "batch")


def _recurrent_batch(num_features, max_steps, center, **options):
    options = _no_mean_only("batch", options)
    gamma_init = options.pop("gamma_init", None)
    layer = RecurrentBatchNorm(num_features, max_steps, center=center, **options)
    return _init_gamma(layer, 0.1 if gamma_init is None else gamma_init, "batch")


def _group(num_features, dims, groups=32, eps=1e-5, affine=True):
    if num_features % groups:
        hint = ", ".join(str(d) for d in range(1, num_features + 1) if num_features % d == 0 and d <= 64)
        raise ConfigError(f"norm.groups={groups} does not divide the {num_features} channels of a layer; "
                          f"choose a divisor of {num_features} (e.g. {hint})")
    return nn.GroupNorm(groups, num_features, eps=eps, affine=affine)


def _per_step(layer_type):
    """The recurrent form of a norm without time dependence: its layer at every step."""
    return lambda num_features, max_steps, center, **options: StepNorm(layer_type(num_features, **options))


def _check_ghost(options: dict, batch_size: int) -> None:
    v = options.get("virtual_batch_size", 32)
    if batch_size > v and batch_size % v:
        raise ConfigError(f"norm.virtual_batch_size={v} does not divide batch_size={batch_size}; choose a divisor "
                          f"of {batch_size}, or a batch size that is a multiple of {v}")


def _weight_data_init(model: nn.Module, inputs, options: dict) -> None:
    if options.get("data_init", True):
        weight_norm_data_init(model, inputs)


def _recurrent_weight(num_features, max_steps, center, **options):
    _no_mean_only("weight", options)
    return StepNorm(nn.Identity())  # weight norm acts on the cell's matrices


def _weight(num_features, dims, mean_only=False, momentum=0.1, data_init=True):
    # data_init acts on the whole model (Norm.data_init), not on a layer
    return _mean_only(num_features, momentum) if mean_only else nn.Identity()


_AFFINE = frozenset({"eps", "affine"})
for _entry in (
    Norm("none", lambda num_features, dims: nn.Identity(),
         recurrent=lambda num_features, max_steps, center: StepNorm(nn.Identity())),
    Norm("batch", _batch, frozenset({"momentum", "eps", "affine", "mean_only", "gamma_init"}), _BN_LAYERS,
         recurrent=_recurrent_batch, population_layers=_BN_POPULATION),
    Norm("group", _group, frozenset({"groups", "eps", "affine"}), (nn.GroupNorm,)),
    Norm("layer", lambda num_features, dims, **o: LayerNorm(num_features, **o), _AFFINE, (LayerNorm, nn.LayerNorm),
         recurrent=_per_step(LayerNorm)),
    # GroupNorm with one channel per group is instance norm with per-channel affine, fused.
    Norm("instance",
         lambda num_features, dims, **o: nn.GroupNorm(num_features, num_features, **o), _AFFINE, (nn.GroupNorm,),
         needs_positions=True),
    Norm("weight", _weight, frozenset({"mean_only", "momentum", "data_init"}), (MeanOnlyBatchNorm,),
         prepare_model=apply_weight_norm, data_init=_weight_data_init,
         recurrent=_recurrent_weight, population_layers=(MeanOnlyBatchNorm,)),
    Norm("rms", lambda num_features, dims, **o: RMSNorm(num_features, **o), _AFFINE, (RMSNorm,),
         recurrent=_per_step(RMSNorm)),
    Norm("ghost", lambda num_features, dims, **o: GhostBatchNorm(num_features, **o),
         frozenset({"virtual_batch_size", "eps", "momentum", "affine"}), (GhostBatchNorm,), check=_check_ghost,
         population_layers=(GhostBatchNorm,)),
    Norm("renorm", lambda num_features, dims, **o: BatchRenorm(num_features, **o),
         frozenset({"r_max", "d_max", "relax_from", "r_max_at", "d_max_at", "eps", "momentum", "affine"}),
         (BatchRenorm,), population_layers=(BatchRenorm,)),
):
    register_norm(_entry)
