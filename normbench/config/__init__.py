"""What a composed config may hold, checked without torch: the rule vocabulary
(:mod:`~normbench.config.rules`), every key's rule (:mod:`~normbench.config.schema`), the checks
of a composed config (:mod:`~normbench.config.validation`) and the config files' catalogue
(:mod:`~normbench.config.catalog`).
"""
