"""The kit's own error types."""


class BadInputError(ValueError):
    """Input that cannot be used, with the file (and row or column) at fault in the message."""
