"""Everything that imports torch to train one run: the loop (:mod:`~normbench.training.trainer`),
checkpoints (:mod:`~normbench.training.checkpoints`), evaluation, batch sources, tasks, optimizers
and schedules, exact population statistics, the device and environment, torchrun, preemption,
progress and loggers. It reads the registries (norms, models, data) and writes the run directory
(:mod:`normbench.records`); it never imports the command line, the reporter or the claims.
"""
