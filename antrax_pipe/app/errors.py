"""The app's refusal: an :class:`AppError` carries the HTTP status the server answers with."""

from __future__ import annotations


class AppError(Exception):
    """A request the app refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
