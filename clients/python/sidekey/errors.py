"""Errors raised by the client. Branch on ``err.code`` (a ``SIDEKEY_E_*`` code), never on the text."""
from typing import Optional


class SidekeyError(Exception):
    """An error from the agent or the client, with the agent's ``SIDEKEY_E_*`` code.

    ``status`` is the HTTP status when the agent answered, else ``None``.
    Messages never carry a secret value.
    """

    def __init__(self, code: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class NotModified(SidekeyError):
    """A long-poll ended without a new version (the timeout passed)."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__("SIDEKEY_E_NOT_MODIFIED", f"{name}: still version {version}", 304)
        self.version = version
