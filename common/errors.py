"""The one error type users see: a one-line, actionable message (what is wrong, what to do)."""


class UserError(Exception):
    """Bad input or environment. Command-line entry points print ``error: <message>`` and exit 2."""
