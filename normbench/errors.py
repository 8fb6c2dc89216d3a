"""The one exception type for bad user input, and how the command line prints it."""


class ConfigError(ValueError):
    """A configuration value, combination or path that cannot work.

    Its message names the value, says why it is wrong and what is allowed, one line per problem
    (a config with several bad values names each); the command line prints it without a
    traceback and exits non-zero before any training.
    """


def error_lines(message: object) -> str:
    """``message`` as the command line prints it: ``normbench: error:`` before each of its lines."""
    return "\n".join(f"normbench: error: {line}" for line in str(message).splitlines() or [""])
