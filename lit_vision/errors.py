"""User-facing errors.

Anything raised as `LitVisionError` is a problem with the user's input (a file, a flag,
a value): the CLI prints its message as one paragraph and exits with status 2, without
a stack trace. Everything else is a bug and keeps its traceback.
"""


class LitVisionError(Exception):
    """Bad input that the user can fix; the message names the culprit and what was expected."""
