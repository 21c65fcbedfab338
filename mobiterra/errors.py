"""Errors shown to users as one line (no traceback)."""


class InputError(Exception):
    """Unusable input or configuration: the message names the file and the problem."""
