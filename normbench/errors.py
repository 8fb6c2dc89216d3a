"""The one exception type for bad user input."""


class ConfigError(ValueError):
    """A configuration value, combination or path that cannot work.

    Its message is one line that names the value, says why it is wrong and what is allowed;
    the command line prints it without a traceback and exits non-zero before any training.
    """
