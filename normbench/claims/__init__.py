"""The papers' claims. A claim is one spec file and one verdict function keyed by its id.

- ``normbench/claims/specs/<id>.yaml``: the title, the paper and its numbers, the experiment's
  scales (fixed overrides and sweeps, see :mod:`normbench.claims.experiments`), the verdict's
  parameters, the report's options and any extra figures by name;
- :mod:`normbench.claims.verdicts` (FiLM's: :mod:`normbench.claims.verdicts_film`):
  ``@verdict("<id>")`` on the function that decides it.

Adding a claim is those two things; ``normbench reproduce`` special-cases none. The specs are
not Hydra config groups: ``normbench reproduce <id> --dry-run`` prints the ``normbench run -m``
commands a claim runs.

The registry is :mod:`normbench.claims.registry`; the scales and sweeps of a claim's spec are
:mod:`normbench.claims.experiments` (read by `normbench list` without pandas), the deciding checks
:mod:`normbench.claims.checks`, and `normbench reproduce` :mod:`normbench.claims.reproduce`.
Nothing here imports torch.
"""
