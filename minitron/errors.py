"""The one exception type users see: the CLI prints its message as a single line and exits 1."""


class MinitronError(Exception):
    """A problem with the user's input or environment, explained in one line."""
