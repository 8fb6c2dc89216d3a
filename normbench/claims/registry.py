"""The claim registry: each spec file with its verdict function (see :mod:`normbench.claims`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from normbench.claims import verdicts_film  # noqa: F401  (registers FiLM's verdicts)
from normbench.claims.checks import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from normbench.claims.verdicts import VERDICTS
from normbench.errors import ConfigError
from normbench.report.load import RunSet

SPEC_DIR = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class Claim:
    id: str
    title: str                # one line, for `normbench list claims`
    paper: str
    paper_result: str         # the paper's figure or numbers
    verdict: Callable[[RunSet, dict], Verdict]
    params: dict[str, Any] = field(default_factory=dict)   # the spec's ``verdict`` parameters
    figures: tuple[str, ...] = ()                          # extra figures by name


def _load_claims() -> dict[str, Claim]:
    claims = {}
    for path in sorted(SPEC_DIR.glob("*.yaml")):
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        missing = [k for k in ("title", "paper", "paper_result") if not spec.get(k)]
        if missing or path.stem not in VERDICTS:
            what = f"no {', '.join(missing)}" if missing else "no verdict function (@verdict in claims/verdicts.py)"
            raise ConfigError(f"claim spec {path} has {what}")
        claims[path.stem] = Claim(path.stem, spec["title"], spec["paper"], spec["paper_result"], VERDICTS[path.stem],
                                  dict(spec.get("verdict") or {}), tuple(spec.get("figures") or ()))
    return claims


CLAIMS: dict[str, Claim] = _load_claims()


def claim(name: str) -> Claim:
    if name not in CLAIMS:
        raise ConfigError(f"unknown claim '{name}'; choose from: {', '.join(CLAIMS)} (see `normbench list claims`)")
    return CLAIMS[name]


__all__ = ["CLAIMS", "INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "SPEC_DIR", "Claim", "Verdict", "claim"]
