"""What `normbench list` shows: every norm, model, dataset and optimizer with one line each."""

from __future__ import annotations


def catalog() -> dict[str, dict[str, str]]:
    from normbench.data import DATASETS
    from normbench.models import MODEL_DESCRIPTIONS
    from normbench.norms import NORMS
    from normbench.optim import OPTIMIZER_DESCRIPTIONS

    return {
        "norms": {name: norm.description for name, norm in NORMS.items()},
        "models": MODEL_DESCRIPTIONS,
        "datasets": {name: d.description for name, d in DATASETS.items()},
        "optimizers": OPTIMIZER_DESCRIPTIONS,
        **claims_catalog(),
    }


def claims_catalog() -> dict[str, dict[str, str]]:
    """Claims and experiments, without importing torch."""
    from normbench.claims import CLAIMS
    from normbench.experiments import experiment_names, load_experiment

    return {
        "experiments": {name: str(load_experiment(name).get("description", "")) for name in experiment_names()},
        "claims": {c.id: f"{c.title} ({c.paper})"
                   for c in CLAIMS.values()},
    }
