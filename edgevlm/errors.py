"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class EdgeVLMError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""
