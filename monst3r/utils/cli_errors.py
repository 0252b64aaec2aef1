"""Command-line errors as ONE line (the project's convention for every entry point).

argparse prints the whole usage block before its ``prog: error: ...`` line; :class:`OneLineArgumentParser` prints
only ``error: <message> (see <prog> --help)`` on stderr and exits with status 2 (as argparse does).
:func:`error_exit` is the same line for a user mistake found later (a ``Monst3rInputError``): the entry points
``return error_exit(exc)``.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one ``error: ...`` line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def error_exit(message, status: int = 2) -> int:
    """Print ``error: <message>`` on stderr; returns the exit status (2: a user mistake)."""
    print(f"error: {message}", file=sys.stderr)
    return status
