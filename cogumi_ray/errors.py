"""One exception per area, so callers can catch a stage's failures without catching bugs."""


class CogumiError(Exception):
    """Base class: every message says what was wrong and how to fix it."""


class ConfigError(CogumiError):
    """A config file or value is invalid."""


class RunError(CogumiError):
    """The run directory or manifest is inconsistent, or a needed upstream stage is missing."""


class DataError(CogumiError):
    """Input data cannot be read or does not fit the Example schema."""


class ModelError(CogumiError):
    """A model cannot be built, loaded or exported."""


class TrainError(CogumiError):
    """Training cannot start or failed permanently."""


class JudgeError(CogumiError):
    """A judge cannot be reached or its answers cannot be used."""


class EvalError(CogumiError):
    """A benchmark cannot be run, or a quality gate failed."""


class MissingDependencyError(CogumiError):
    """An optional dependency (or hardware) needed by the chosen config switch is absent."""

    def __init__(self, what: str, install: str, why: str = "") -> None:
        reason = f" ({why})" if why else ""
        super().__init__(f"{what} is not available{reason}. To resolve: {install}")


class SandboxUnavailable(CogumiError):
    """The machine cannot isolate untrusted code as configured (never silently weakened)."""
