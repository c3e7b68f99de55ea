"""The error of ``dtnerf-render`` and the modules it is split into."""


class RenderError(Exception):
    """Bad input for dtnerf-render; the message is printed as one line."""
