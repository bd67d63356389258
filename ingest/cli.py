"""What every command line does with a user's mistake: one line on stderr, exit status 2.

A missing path, an unknown name, a value out of range or a file of the wrong kind is the user's to fix, so
the commands check what they will need before they start (:func:`user_errors` around that check) and print
the error's own message, which names the flag or file and the problem, as ``PROG: error: MESSAGE``.
Tracebacks are left for bugs: the work after the check runs outside it. ``POSEMILL_TRACEBACK=1`` shows the
traceback of a refused command too, for debugging.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

# The exceptions the project's checks raise for bad input (DESIGN.md, "Errors"): ValueError for a bad value or
# a file that is not what it should be, OSError (FileNotFoundError, NotADirectoryError, PermissionError, ...)
# for a path that is missing or unreadable, KeyError for an unknown name.
USER_ERRORS = (ValueError, OSError, KeyError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a KeyError's message is its first argument, unquoted)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def fail(prog: str, message: str) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` (one line) to stderr and exit with status 2."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Inside: a :data:`USER_ERRORS` exception ends the command with :func:`fail` (its message, status 2);
    with ``POSEMILL_TRACEBACK=1`` in the environment it propagates instead."""
    try:
        yield
    except USER_ERRORS as exc:
        if os.environ.get("POSEMILL_TRACEBACK") == "1":
            raise
        fail(prog, one_line(exc))
