"""Remote input the subscriber's agent refused: audited, and the operator is told.

The broker forwards input only with ``input:control`` granted; the agent checks again and may
still drop it (DESIGN §2, 第31条1項④: the consent must be the subscriber's own): while a consent
question is open or just closed, when it is aimed at the consent window or the "being watched"
indicator (``input_paused``), when the subscriber is using the keyboard or mouse themselves
(``subscriber_busy``), or when its own record has no control (``consent_required``, e.g. withdrawn a
moment before the broker heard of it). The agent reports these as an ``error`` message, at most once
a second with a count (``input refused: REASON (N events)``, agent/session_input.py).

Before, the broker only logged the report, so the operator clicked on and on without knowing why
nothing happened. Now each report is

- audited as ``input.refused`` with ``actor = agent:SERIAL``, the code, the reason and a count, at
  most once per ``SessionRules.refusal_audit_interval`` (5 s) per session, as the broker's own input
  refusals are (a flood of refused mouse moves writes a handful of rows);
- added to the session's ``refused_inputs`` (its audit summary);
- sent to the session's operator as an ``error`` with the same code (at most every
  ``SessionRules.operator_notice_interval``, 1 s), which the console shows as a notice beside the screen
  (「お客さまの操作中のため、入力は届いていません。」, broker/static/js/strings-ja.js).

The report comes from an authenticated agent but is still outside input: an unknown code, a reason
that is not one of :data:`REASONS` or a count out of range is read as one event, reason
``unspecified``; nothing of the agent's text reaches the operator or the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.errors import ErrorCode
from protocol.messages import Error
from protocol.session import Phase

from .policy import AuditThrottle

if TYPE_CHECKING:
    from .core.core import SessionCore
    from .core.events import AgentError
    from .core.state import SessionRules

__all__ = ["REASONS", "AgentRefusal", "AgentRefusals", "parse_agent_refusal"]

REASONS = frozenset(
    {"question_open", "grace", "protected_window", "protected_focus", "subscriber_active", "no_control"}
)
"""Reasons an agent may give (agent/input/consent_guard.py ``Refusal``, agent/session_input.py)."""

MAX_REPORTED_COUNT = 1_000_000
"""Largest count one report may claim; more is a lie and counts as one."""

_REPORT = re.compile(r"input refused: ([a-z_]{1,32}) \((\d{1,7}) events?\)\Z")

_CODES = {
    ErrorCode.INPUT_PAUSED.value: ErrorCode.INPUT_PAUSED,
    ErrorCode.SUBSCRIBER_BUSY.value: ErrorCode.SUBSCRIBER_BUSY,
    ErrorCode.CONSENT_REQUIRED.value: ErrorCode.CONSENT_REQUIRED,
    # agents before input_paused existed reported the consent guard's refusals as not_allowed
    ErrorCode.NOT_ALLOWED.value: ErrorCode.INPUT_PAUSED,
}

_TO_OPERATOR = {
    ErrorCode.INPUT_PAUSED: "the subscriber's PC did not apply the input: a question is open",
    ErrorCode.SUBSCRIBER_BUSY: "the subscriber's PC did not apply the input: the subscriber is using it",
    ErrorCode.CONSENT_REQUIRED: "the subscriber's PC did not apply the input: control is not granted",
}


@dataclass(frozen=True, slots=True)
class AgentRefusal:
    code: ErrorCode
    reason: str
    count: int


def parse_agent_refusal(msg: Error) -> AgentRefusal | None:
    """The refusal an agent's ``error`` reports, or None when it reports something else."""
    code = _CODES.get(msg.code)
    if code is None:
        return None
    match = _REPORT.match(msg.message)
    if match is None:
        if code is ErrorCode.CONSENT_REQUIRED:  # one event each ("input:control is not granted")
            return AgentRefusal(code, "no_control", 1)
        if msg.code == ErrorCode.NOT_ALLOWED.value:  # not_allowed about something other than input
            return None
        return AgentRefusal(code, "unspecified", 1)
    reason, count = match.group(1), int(match.group(2))
    if reason not in REASONS:
        reason = "unspecified"
    if not 1 <= count <= MAX_REPORTED_COUNT:
        count = 1
    return AgentRefusal(code, reason, count)


class AgentRefusals:
    """Handles an agent's ``error`` messages about input it refused (see the module docstring);
    part of the pure session core (:class:`broker.core.SessionCore` owns one)."""

    def __init__(self, rules: SessionRules) -> None:
        self._audits = AuditThrottle(rules.refusal_audit_interval)
        self._notices = AuditThrottle(rules.operator_notice_interval)

    def handle(self, core: SessionCore, event: AgentError, now: float) -> bool:
        """True when the error was a refusal report of the agent's live session (and was handled)."""
        agent, msg = event.agent, event.message
        refusal = parse_agent_refusal(msg)
        session = agent.session
        if refusal is None or session is None or session.agent is not agent:
            return False
        if session.phase is not Phase.ACTIVE:
            return False
        session.refused_inputs += refusal.count
        key = f"{session.id}|{refusal.code.value}"
        count = self._audits.note(key, now, refusal.count)
        if count is not None:
            core.audit(
                "input.refused",
                session.id,
                now,
                actor=f"agent:{agent.serial}",
                contract=session.contract_id,
                code=refusal.code.value,
                reason=refusal.reason,
                count=count,
            )
        if self._notices.note(key, now, refusal.count) is not None:
            notice = Error(code=refusal.code.value, message=_TO_OPERATOR[refusal.code])
            for viewer in sorted(session.viewers, key=id):
                if viewer.name is not None and viewer.name == session.operator:
                    core.send_operator(viewer, notice)
        return True
