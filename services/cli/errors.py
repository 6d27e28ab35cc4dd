"""One line per CLI error, exit code 2: no traceback ever reaches a user of the command."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from shared.errors import FailcatError

USAGE_ERROR = 2
INTERRUPTED = 130  # Ctrl-C: the shell's 128 + SIGINT, so a script can tell it from a failure
BROKEN_PIPE = 141  # the reader of stdout left: 128 + SIGPIPE, what other tools end with


class CliError(Exception):
    """A user-facing error: its message is the whole line printed (after "failcat: ")."""

    code = USAGE_ERROR


class Interrupted(CliError):
    """Ctrl-C, answered with what was done (exit 130)."""

    code = INTERRUPTED


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line too (its default prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        commands = next(
            (a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if commands is not None and message.endswith(f"required: {commands.dest}"):
            # argparse names a missing command by its internal dest ("retention_command").
            message = f"a command is needed: {', '.join(commands.choices)}"
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def describe(exc: FailcatError) -> str:
    """A service error as one line naming its fields: "query: column 12: expected ..."."""
    if not exc.errors:
        return exc.message
    details = "; ".join(f"{e.path}: {e.message}" for e in exc.errors)
    if all(e.message in exc.message for e in exc.errors):
        return details  # the message only repeats them, without the field's name
    return f"{exc.message} ({details})"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def guarded(command: Callable[[], int]) -> int:
    """Run a command, turning every error into one line on stderr and exit code 2 (130 for
    Ctrl-C).

    FAILCAT_DEBUG=1 shows the traceback of an unexpected error (for bug reports)."""
    code = USAGE_ERROR
    try:
        return command()
    except CliError as exc:
        message, code = str(exc), exc.code
    except FailcatError as exc:
        message = describe(exc)
    except KeyboardInterrupt:
        message, code = "interrupted", INTERRUPTED
    except BrokenPipeError:
        # The reader left (`failcat search --json | head`): not an error to report. What is
        # still buffered goes nowhere, so the exit flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror or exc}"
    except Exception as exc:
        if os.environ.get("FAILCAT_DEBUG"):
            traceback.print_exc()
        message = (
            f"unexpected error: {type(exc).__name__}: {exc} (FAILCAT_DEBUG=1 shows the traceback)"
        )
    print(f"failcat: {one_line(message)}", file=sys.stderr)
    return code
