"""The errors headtune reports to its users.

Everything a user can fix (a bad flag, a missing file, an unreachable Hub) is a
`HeadtuneError`: the CLI prints its message as one line and exits with status 2.
Anything else is a bug in headtune and exits with status 1.
"""
from __future__ import annotations


class HeadtuneError(Exception):
    """A problem with the user's input or environment, with a one-line message that names the fix."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: a multi-line message would look like a traceback in a log.
        super().__init__(" ".join(str(message).split()))


def flag(name: str) -> str:
    """The CLI flag for a config field name: `train_size` -> `--train-size`."""
    return "--" + name.replace("_", "-")
