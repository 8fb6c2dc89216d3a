"""The norm registry: one :class:`Norm` entry per ``norm=`` choice (see :mod:`normbench.norms`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from normbench.errors import ConfigError


@dataclass(frozen=True)
class Norm:
    """What normbench knows about one normalization.

    Attributes:
        name: the ``norm=`` choice.
        build: ``build(num_features, dims, **options) -> nn.Module``; options already checked
            against ``options``.
        options: the option keys the layer takes (the YAML's other keys are run-level).
        layer_types: the module types it builds; their own parameters are norm parameters.
        needs_positions: it normalizes over positions, so ``(N, C)`` features cannot take it.
        prepare_model: ``prepare_model(model) -> model`` after the model is built (weight norm
            reparametrizes every conv and linear weight).
        data_init: ``data_init(model, inputs, options)`` before the first step (weight norm's
            data-dependent initialisation).
        check: ``check(options, batch_size)`` raises :class:`ConfigError` for options that do
            not fit the run, before anything is built.
        recurrent: ``recurrent(num_features, max_steps, center, **options) -> nn.Module`` for a
            term of a recurrent cell (called as ``norm(x, t)``); None: no recurrent form.
        recurrent_options: the option keys the recurrent form takes (default: ``options``).
        population_layers: the module types it builds that keep population (running) statistics
            for evaluation, which exact population statistics recompute (batch norm's kinds).
    """

    name: str
    build: Callable[..., nn.Module]
    options: frozenset[str] = frozenset()
    layer_types: tuple[type, ...] = ()
    needs_positions: bool = False
    prepare_model: Callable[[nn.Module], nn.Module] | None = None
    data_init: Callable[[nn.Module, Any, dict], None] | None = None
    check: Callable[[dict, int], None] | None = None
    recurrent: Callable[..., nn.Module] | None = None
    recurrent_options: frozenset[str] | None = None
    population_layers: tuple[type, ...] = ()


#: The registry: ``norm=`` choice -> its entry.
NORMS: dict[str, Norm] = {}


def register_norm(norm: Norm) -> Norm:
    """Add ``norm`` to the registry (replacing an entry of the same name) and return it."""
    NORMS[norm.name] = norm
    return norm


def get_norm(name: str) -> Norm:
    """The registry entry of ``name``; :class:`ConfigError` naming the known norms otherwise."""
    try:
        return NORMS[name]
    except KeyError:
        raise ConfigError(f"unknown norm '{name}'; known norms: {', '.join(NORMS)}") from None


def population_layer_types() -> tuple[type, ...]:
    """Every registered norm's :attr:`Norm.population_layers`: the layers, whichever norm built
    them (a model may hold batch norm of its own, as FiLM's classifier does), that evaluate with
    population statistics."""
    return tuple(dict.fromkeys(t for norm in NORMS.values() for t in norm.population_layers))
