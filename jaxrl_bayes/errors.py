"""The one base class of errors a user can cause (bad names, bad files, bad config values).

Every such error in the library subclasses `UserError`, and its message is one line that says
what is wrong, where, and what to do next. Entry points (`experiments.*`, `benchmarks.*`) print
that line and exit with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """An error caused by the user's input; `str(error)` is the one-line message to show."""


__all__ = ["UserError"]
