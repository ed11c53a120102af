"""Errors a user can cause and fix.

The CLI prints these as one line (no traceback): the message names the thing that is wrong and
what to do about it. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config value, a missing or corrupt file, missing weights."""
