"""Errors of the agent, each with a stable code; the CLI prints them translated and exits non-zero.

Every exception class the agent defines is in this tree (a test walks the package): its ``code`` is
an :class:`AgentErrorCode` for the agent's own refusals, or the protocol's
:class:`~protocol.errors.ErrorCode` when it comes from the broker over the wire. Both sets are
closed, and each code has Japanese and English words in ``agent/i18n.py`` (a test checks).

Tree::

    AgentError                      "agent_error"
    ├── UnreachableError            "unreachable"           network / TLS failure
    ├── FingerprintMismatchError    "fingerprint_mismatch"  the broker's CA is not the pinned one
    ├── EnrollDeclined              "declined"              the subscriber said no (第31条1項④)
    ├── EnrollRefused               broker's ErrorCode      token, CSR, contract refusals
    ├── ConnectionRefusedByBroker   broker's ErrorCode      permanent refusal on /agent
    ├── AlreadyRunning              "already_running"       ``agent run`` twice on one data dir (instance.py)
    ├── NotEnrolled                 "not_enrolled"          cli.py
    ├── EnrollFileError             "bad_enroll_file"       desktop/enrollfile.py
    ├── DialogUnavailable           "dialog_unavailable"    consent_window.py
    ├── MissingDependency           "missing_dependency"    optional.py
    ├── ConsentError                "consent_error"         consent.py
    │   ├── UnknownScope            "unknown_scope"
    │   ├── WrongSession            "wrong_session"
    │   └── ConsentEnded            "consent_ended"
    ├── ReceiptRejected             "invalid_field"         receipts.py: a receipt that must not be trusted
    ├── InputRejected               "input_rejected"        input/inject.py: input this PC cannot apply
    ├── CaptureError                "capture_failed"        screen/capture.py
    │   ├── NoDisplayError          "no_display"
    │   └── MonitorNotFound         "monitor_not_found"
    ├── ItemUnavailable             "item_unavailable"      inventory/model.py (reason shown to the operator)
    ├── RouterProbeError            "router_probe_failed"   inventory/router.py
    └── CommandError                "command_failed"        inventory/commands.py
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import ErrorCode


class AgentErrorCode(StrEnum):
    """The agent's own stable codes (never on the wire; never the same as an ``ErrorCode``)."""

    AGENT_ERROR = "agent_error"
    UNREACHABLE = "unreachable"
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    DECLINED = "declined"
    ALREADY_RUNNING = "already_running"
    NOT_ENROLLED = "not_enrolled"
    BAD_ENROLL_FILE = "bad_enroll_file"
    DIALOG_UNAVAILABLE = "dialog_unavailable"
    MISSING_DEPENDENCY = "missing_dependency"
    CONSENT_ERROR = "consent_error"
    UNKNOWN_SCOPE = "unknown_scope"
    WRONG_SESSION = "wrong_session"
    CONSENT_ENDED = "consent_ended"
    INPUT_REJECTED = "input_rejected"
    CAPTURE_FAILED = "capture_failed"
    NO_DISPLAY = "no_display"
    MONITOR_NOT_FOUND = "monitor_not_found"
    ITEM_UNAVAILABLE = "item_unavailable"
    ROUTER_PROBE_FAILED = "router_probe_failed"
    COMMAND_FAILED = "command_failed"


Code = AgentErrorCode | ErrorCode
"""What ``AgentError.code`` may be: the closed union of the two sets."""


def wire_code(code: str) -> ErrorCode:
    """A code received from the broker as an :class:`ErrorCode`; one this agent does not know (a
    newer broker) is ``internal``, so the code set stays closed and always has words."""
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL


class AgentError(Exception):
    code: Code = AgentErrorCode.AGENT_ERROR

    def __init__(self, message: str = "", *, code: Code | None = None) -> None:
        super().__init__(message or (code or self.code).value)
        if code is not None:
            self.code = code


class UnreachableError(AgentError):
    code = AgentErrorCode.UNREACHABLE


class FingerprintMismatchError(AgentError):
    code = AgentErrorCode.FINGERPRINT_MISMATCH

    def __init__(self, *, expected: str, actual: str) -> None:
        super().__init__(f"CA fingerprint mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class EnrollDeclined(AgentError):
    code = AgentErrorCode.DECLINED


class EnrollRefused(AgentError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=wire_code(code))


class ConnectionRefusedByBroker(AgentError):
    """A refusal that retrying cannot fix: revoked or unknown certificate, terminated contract."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=wire_code(code))
