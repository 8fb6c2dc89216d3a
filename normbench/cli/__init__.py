"""The command line: the Typer commands (:mod:`~normbench.cli.commands`), their input checks
(:mod:`~normbench.cli.usage`), the Hydra app a run hands off to (:mod:`~normbench.cli.hydra_app`),
sweep directories and dry runs (:mod:`~normbench.cli.sweeps`) and the launchers' failure records
(:mod:`~normbench.cli.launchers`). The top room: it imports the others, none imports it. Torch
loads only once a job starts.
"""
