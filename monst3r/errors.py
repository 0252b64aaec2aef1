"""The one exception type for user mistakes.

Entry points catch :class:`Monst3rInputError`, print its message as one line and exit non-zero.
The message must say what went wrong *and* what to do about it.
"""


class Monst3rInputError(ValueError):
    """Bad user input (missing file, unreadable image, wrong checkpoint, too few frames, ...)."""
