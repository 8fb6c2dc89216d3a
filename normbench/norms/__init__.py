"""Every normalization, registered once: the registry, ``make_norm`` and ``make_recurrent_norm``.

A norm is one :class:`Norm` entry in :data:`NORMS` (see :mod:`normbench.norms.builtin` for the
built-in ones) plus one YAML file in ``configs/norm/``. The entry says how to build the layer,
which options it takes, which layer types it builds (their parameters are the norm's
:math:`\\gamma, \\beta`, e.g. for ``optim.norm_weight_decay=false``), any reparametrization of
the whole model and data-dependent initialisation (weight norm), any check of its options
against the run (ghost batch norm's virtual batch), and its recurrent form if it has one. The
models, the trainer and the optimizer ask the entry, never the name. Whether a norm depends on
the batch is in its YAML (``batch_dependent``), where the torch-free reporter reads it from the
run's own ``config.yaml``.

Shapes follow PyTorch: ``dims`` is the number of spatial dimensions of the features a layer
normalizes, 0 for ``(N, C)``, 1 for ``(N, C, L)``, 2 for ``(N, C, H, W)``. Recurrent models ask
:func:`make_recurrent_norm`, whose layers take the time step as a second argument, ``norm(x, t)``.

Adding a norm: write the layer (a PyTorch-style docstring, a formula test), then
``register_norm(Norm("name", build, options={...}, layer_types=(Layer,)))`` and a
``configs/norm/name.yaml`` with ``name``, a one-line ``description`` (what ``normbench list``
shows, read without importing torch) and the options. A norm registered from another module
(``hydra.searchpath`` for its YAML) is found the same way.
"""

from __future__ import annotations

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
from normbench.norms.registry import NORMS, Norm, get_norm, register_norm
from normbench.norms.weight import (
    SKIP_DATA_INIT,
    apply_weight_norm,
    is_weight_layer,
    weight_norm_data_init,
    weight_normed_layers,
)


def _checked(norm: Norm, options: dict, allowed: frozenset[str], where: str = "") -> dict:
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"norm '{norm.name}'{where} takes no option {', '.join(sorted(map(repr, unknown)))}; "
                          f"its options: {', '.join(sorted(allowed)) or 'none'}")
    return options


def make_norm(kind: str, num_features: int, dims: int, **options) -> nn.Module:
    """Build the normalization layer ``kind`` for features of ``num_features`` channels.

    Args:
        kind: a registered norm (``normbench list norms``).
        num_features: C, the channel (feature) count.
        dims: spatial dims of the input: 0 for ``(N, C)``, 1 for ``(N, C, L)``, 2 for
            ``(N, C, H, W)``.
        **options: the norm's options (its YAML's layer keys; see :mod:`normbench.norms.builtin`).

    Returns:
        The layer; ``nn.Identity`` for ``none`` and for ``weight`` without mean-only BN (weight
        norm acts on the weights: see :func:`apply_weight_norm`).

    Raises:
        ValueError (:class:`~normbench.errors.ConfigError`): an unknown kind or option, an option
        value the layer cannot take, or a norm over positions on features that have none.
    """
    norm = get_norm(kind)
    if dims not in (0, 1, 2, 3):
        raise ConfigError(f"dims must be 0, 1, 2 or 3, got {dims}")
    if norm.needs_positions and dims == 0:
        raise ConfigError(f"norm={kind} normalizes each channel over its positions, and (N, C) features have "
                          "none; use a convolutional model (model=cnn) or norm=layer")
    return norm.build(num_features, dims, **_checked(norm, dict(options), norm.options))


def make_recurrent_norm(kind: str, num_features: int, max_steps: int, center: bool = True,
                        **options) -> nn.Module:
    """The normalization ``kind`` for one term of a recurrent cell, called as ``norm(x, t)``.

    ``batch`` gives a :class:`RecurrentBatchNorm` (statistics per time step, ``gamma_init``
    defaulting to Cooijmans et al.'s 0.1; ``center=False`` drops :math:`\\beta`); ``layer`` and
    ``rms`` their layer applied alike at every step; ``none`` and ``weight`` the identity
    (weight norm acts on the cell's matrices, see :func:`apply_weight_norm`). A norm without a
    recurrent form raises :class:`~normbench.errors.ConfigError`.
    """
    norm = get_norm(kind)
    if norm.recurrent is None:
        *others, last = [n for n, entry in NORMS.items() if entry.recurrent is not None]
        with_form = f"{', '.join(others)} or {last}"
        raise ConfigError(f"norm={kind} has no meaning in a recurrent cell (it has no recurrent form: a cell's features "
                          f"are one vector per step); use norm={with_form}")
    allowed = norm.options if norm.recurrent_options is None else norm.recurrent_options
    return norm.recurrent(num_features, max_steps, center, **_checked(norm, dict(options), allowed,
                                                                      " in a recurrent cell"))


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The γ and β of every normalization layer of ``model`` (of any registered norm)."""
    kinds = tuple({t for norm in NORMS.values() for t in norm.layer_types})
    seen, out = set(), []
    for module in model.modules():
        if isinstance(module, kinds):
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def needs_bias(layer: nn.Module) -> bool:
    """Whether the layer before ``layer`` should keep its bias: a norm that subtracts a mean
    per channel cancels it (and brings its own shift); the identity and RMSNorm do not."""
    return isinstance(layer, nn.Identity) or not getattr(layer, "centers", True)


from normbench.norms import builtin  # noqa: E402,F401  (registers the built-in norms)

__all__ = ["NORMS", "SKIP_DATA_INIT", "BatchRenorm", "GhostBatchNorm", "LayerNorm", "MeanOnlyBatchNorm", "Norm",
           "RMSNorm", "RecurrentBatchNorm", "StepNorm", "apply_weight_norm", "get_norm", "is_weight_layer",
           "make_norm", "make_recurrent_norm", "needs_bias", "norm_parameters", "register_norm",
           "weight_norm_data_init", "weight_normed_layers"]
