"""Errors of the broker, each carrying a stable :class:`protocol.errors.ErrorCode`.

Tree::

    BrokerError
    ├── StoreError            storage refused an operation (duplicate contract, unknown row …)
    │   ├── AlreadyExists     "invalid_field"  e.g. a second contract for one ID (第7条)
    │   └── NotFound          "not_found"
    └── RefusedError          a request refused by rule: token, certificate, contract, policy

The server turns a ``BrokerError`` into an ``error`` message with its ``code``; the CLI prints
it and exits non-zero. Nothing else crosses the package boundary.
"""

from __future__ import annotations

from protocol.errors import ErrorCode


class BrokerError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self, message: str, *, code: ErrorCode | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        """Seconds after which the same request may succeed (service hours, rate limits, locks)."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.value


class StoreError(BrokerError):
    pass


class AlreadyExists(StoreError):
    code = ErrorCode.INVALID_FIELD


class NotFound(StoreError):
    code = ErrorCode.NOT_FOUND


class RefusedError(BrokerError):
    """A refusal by rule; ``code`` says which rule."""
