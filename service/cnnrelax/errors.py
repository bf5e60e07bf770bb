"""The core's one exception for a parameter whose value is not acceptable (the API maps it to a 422)."""

from __future__ import annotations

__all__ = ["InvalidParameterError"]


class InvalidParameterError(ValueError):
    """A parameter's value is not acceptable; the message names the parameter and the value."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
