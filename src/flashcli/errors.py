"""Errors that end a command with one clear sentence and exit code 2 (a user mistake)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: bad input, unknown action, a file that is not what it claims.

    The message is one sentence naming the thing and what to do; the CLI prints it without a
    traceback and exits with code 2.
    """


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
