"""The one error type a user sees: a sentence that names the problem, never a traceback."""


class MonitorError(Exception):
    """A problem the user can act on; str() is the one line printed on stderr."""
