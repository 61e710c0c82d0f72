"""Exceptions shared across medflip."""


class UserError(Exception):
    """Bad input from the user (file, config, flag): the CLI prints it as one clear line, no traceback."""
