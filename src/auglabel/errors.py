"""User-facing errors.

Anything a user can get wrong (a bad path, a bad value, a corrupt file) raises
:class:`AuglabelError` or a subclass with a one-line message.  The CLI prints
``auglabel: error: <message>`` and exits with status 2 instead of a traceback.
"""


class AuglabelError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(AuglabelError):
    """Invalid configuration value (unknown name, out-of-range number...)."""


class DataError(AuglabelError):
    """Missing, unreadable or corrupt data."""


class CheckpointError(AuglabelError):
    """Unreadable, foreign or incompatible checkpoint / run directory."""
