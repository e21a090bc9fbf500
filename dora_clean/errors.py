"""The one exception type the command line turns into a one-line message."""

__all__ = ["DoraError"]


class DoraError(Exception):
    """A user-facing error: one line that says what is wrong and what to do."""
