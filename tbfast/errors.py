"""Errors a user can act on: the CLI prints them without a traceback and exits with status 2."""


class UserError(Exception):
    """Something the user can fix (a missing path, a broken split file, an incompatible checkpoint).

    The message says what is wrong and what to do.
    """
