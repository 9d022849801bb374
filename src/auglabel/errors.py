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


#: Exit status of a run stopped by SIGTERM after writing its checkpoint: 128 + 15, what a shell reports for a
#: process killed by SIGTERM, so schedulers and torchrun read it the same either way.  Resume with ``--resume``.
PREEMPTED_EXIT_STATUS = 143


class TrainingStopped(AuglabelError):
    """Training stopped on request (SIGTERM) at a step boundary, after writing a checkpoint."""

    exit_code = PREEMPTED_EXIT_STATUS


class DistributedError(AuglabelError):
    """Another process of a torchrun job died, hung past the collective timeout or stopped answering."""


class OutputError(AuglabelError):
    """A result file (checkpoint, metrics, log) could not be written; the previous one is left in place."""
