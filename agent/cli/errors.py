"""The one error type the CLI shows: a single line, never a traceback."""
from __future__ import annotations


class CliError(Exception):
    """A command that failed; `str()` is the one line the user sees."""

    def __init__(self, message: str) -> None:
        # whatever the source (gRPC details, yangson), the user gets one line
        super().__init__(" ".join(str(message).split()))


class NotImplementedByAgent(CliError):
    """The agent does not implement what the command needs (e.g. the History extension)."""
