"""Errors of the agent, each with a stable code; the CLI prints them translated and exits non-zero.

Tree::

    AgentError                      "agent_error"
    ├── UnreachableError            "unreachable"           network / TLS failure
    ├── FingerprintMismatchError    "fingerprint_mismatch"  the broker's CA is not the pinned one
    ├── EnrollDeclined              "declined"              the subscriber said no (第31条1項④)
    ├── EnrollRefused               broker's code           token, CSR, contract refusals
    ├── ConnectionRefusedByBroker   broker's code           permanent refusal on /agent
    └── AlreadyRunning              "already_running"       ``agent run`` twice on one data dir (instance.py)
"""

from __future__ import annotations


class AgentError(Exception):
    code: str = "agent_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code


class UnreachableError(AgentError):
    code = "unreachable"


class FingerprintMismatchError(AgentError):
    code = "fingerprint_mismatch"

    def __init__(self, *, expected: str, actual: str) -> None:
        super().__init__(f"CA fingerprint mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class EnrollDeclined(AgentError):
    code = "declined"


class EnrollRefused(AgentError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class ConnectionRefusedByBroker(AgentError):
    """A refusal that retrying cannot fix: revoked or unknown certificate, terminated contract."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
