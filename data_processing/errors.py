"""The one exception type that means "the input is bad": the CLI prints its message as one line."""


class ProcessingError(Exception):
    """Bad or unusable input. The message says what is wrong and what to do about it."""
