"""The support session's state machine: every transition in one table (h11 ``_state.py`` style).

A session starts when the subscriber asks (第31条①) and ends when either side ends it, the
subscriber withdraws, or a side stays away past the grace period (DESIGN §5)::

    WAITING ──claim──► CONSENT ──decision/timeout──► ACTIVE ──end/lost──► ENDED
       └──code expired / end──────────────────────────────────────────────►┘

What each message needs is in :data:`REQUIREMENTS`: the phase it may arrive in and the consent
scope that must be granted; who may send it (the agent, the session's operator, a read-only
viewer) is in :data:`SENDERS`, keyed alike, checked by :func:`check_sender`. Both the broker and
the agent check them; input without ``input:control`` is dropped and reported, never applied
(DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from .errors import ErrorCode, ProtocolError, UnexpectedMessage


class Phase(StrEnum):
    WAITING = "waiting"
    """Support code issued, request in the operators' queue."""
    CONSENT = "consent"
    """Claimed by an operator; the subscriber is being asked."""
    ACTIVE = "active"
    """The subscriber answered; the relay runs within the granted scopes (possibly none: chat only)."""
    ENDED = "ended"


class Trigger(StrEnum):
    CLAIM = "claim"
    DECISION = "decision"
    """A signed consent receipt, or the broker's own timeout when none came (= deny)."""
    END = "end"
    """Ended by the subscriber, the operator, a lost side after the grace period, or policy."""
    EXPIRE = "expire"
    """The support code was not claimed in time."""


TRANSITIONS: Mapping[tuple[Phase, Trigger], Phase] = {
    (Phase.WAITING, Trigger.CLAIM): Phase.CONSENT,
    (Phase.WAITING, Trigger.EXPIRE): Phase.ENDED,
    (Phase.WAITING, Trigger.END): Phase.ENDED,
    (Phase.CONSENT, Trigger.DECISION): Phase.ACTIVE,
    (Phase.CONSENT, Trigger.END): Phase.ENDED,
    (Phase.ACTIVE, Trigger.DECISION): Phase.ACTIVE,
    (Phase.ACTIVE, Trigger.END): Phase.ENDED,
}


class ConsentRequired(ProtocolError):
    """A message needs a scope the subscriber has not granted (or has withdrawn)."""

    code = ErrorCode.CONSENT_REQUIRED


def transition(phase: Phase, trigger: Trigger) -> Phase:
    try:
        return TRANSITIONS[(phase, trigger)]
    except KeyError:
        raise UnexpectedMessage(f"cannot {trigger.value} a session that is {phase.value}") from None


SCREEN = "screen:view"
CONTROL = "input:control"
RESTART = "system:restart"
INVENTORY_PREFIX = "inventory:"

REQUIREMENTS: Mapping[str, tuple[frozenset[Phase], str | None]] = {
    # message kind: (phases it may arrive in, scope that must be granted)
    "screen_update": (frozenset({Phase.ACTIVE}), SCREEN),
    "monitor_layout": (frozenset({Phase.ACTIVE}), SCREEN),
    "screen_refresh": (frozenset({Phase.ACTIVE}), SCREEN),
    "input": (frozenset({Phase.ACTIVE}), CONTROL),
    "inventory_report": (frozenset({Phase.ACTIVE}), None),  # checked item by item
    "scope_request": (frozenset({Phase.ACTIVE}), None),
    "chat": (frozenset({Phase.CONSENT, Phase.ACTIVE}), None),
    "watch": (frozenset({Phase.CONSENT, Phase.ACTIVE}), None),
    "consent_decision": (frozenset({Phase.CONSENT, Phase.ACTIVE}), None),
    "session_end": (frozenset({Phase.WAITING, Phase.CONSENT, Phase.ACTIVE}), None),
    "reveal_credentials": (frozenset({Phase.ACTIVE}), None),
    "monitor_switch": (frozenset({Phase.ACTIVE}), SCREEN),  # screen_refresh with a monitor
    "invite": (frozenset({Phase.ACTIVE}), SCREEN),  # a colleague would see the screen
    "transfer": (frozenset({Phase.ACTIVE}), None),
    # Issue 16: the operator asks the PC to restart; the agent announces it before it goes.
    "restart_request": (frozenset({Phase.ACTIVE}), RESTART),
    "restart_notice": (frozenset({Phase.ACTIVE}), RESTART),
}


def check_allowed(kind: str, phase: Phase, granted: frozenset[str] | set[str]) -> None:
    """Raise if ``kind`` may not flow now: wrong phase, or its scope is not granted."""
    phases, scope = REQUIREMENTS[kind]
    if phase not in phases:
        raise UnexpectedMessage(f"{kind} is not allowed while the session is {phase.value}")
    if scope is not None and scope not in granted:
        raise ConsentRequired(f"{kind} needs the subscriber's consent to {scope}")


class Role(StrEnum):
    """Who sends a message, by their place in the session (not by their account's rank)."""

    AGENT = "agent"
    """The subscriber's own agent: the only source of screen, layout, inventory and consent."""
    OPERATOR = "operator"
    """The operator who claimed the session: the one person the subscriber gave consent to."""
    VIEWER = "viewer"
    """Anyone else who watches (a supervisor, any second viewer): read-only."""


SENDERS: Mapping[str, frozenset[Role]] = {
    # message kind: who may send it; with REQUIREMENTS (phases, scope) this is the one table of
    # "who may send which message in which phase". A viewer sends nothing that changes the PC
    # (第31条1項④: consent was given to the session's operator): no input, no monitor switch
    # (``screen_refresh`` with a monitor changes what the PC shares; without one it only asks for
    # a keyframe), no scope_request, no chat (the subscriber talks to the one operator who asked
    # for consent), no credentials.
    "screen_update": frozenset({Role.AGENT}),
    "monitor_layout": frozenset({Role.AGENT}),
    "screen_refresh": frozenset({Role.OPERATOR, Role.VIEWER}),
    "input": frozenset({Role.OPERATOR}),
    "inventory_report": frozenset({Role.AGENT}),
    "scope_request": frozenset({Role.OPERATOR}),
    "chat": frozenset({Role.AGENT, Role.OPERATOR}),
    "watch": frozenset({Role.OPERATOR, Role.VIEWER}),
    "consent_decision": frozenset({Role.AGENT}),
    # Ending takes everything away from the PC's viewers: a supervisor may stop a session.
    "session_end": frozenset({Role.AGENT, Role.OPERATOR, Role.VIEWER}),
    "reveal_credentials": frozenset({Role.OPERATOR}),
    "monitor_switch": frozenset({Role.OPERATOR}),
    # Only the operator the subscriber consented to may bring in a colleague or hand over; the
    # subscriber is asked for the new person by name either way (docs/console.md).
    "invite": frozenset({Role.OPERATOR}),
    "transfer": frozenset({Role.OPERATOR}),
    "restart_request": frozenset({Role.OPERATOR}),
    "restart_notice": frozenset({Role.AGENT}),
}


class NotAllowed(ProtocolError):
    """The sender's role in the session may not send this message (e.g. a read-only viewer)."""

    code = ErrorCode.NOT_ALLOWED


def check_sender(role: Role, kind: str, phase: Phase, granted: frozenset[str] | set[str]) -> None:
    """Raise unless ``role`` may send ``kind`` now: :data:`SENDERS`, then :func:`check_allowed`."""
    senders = SENDERS.get(kind)
    if senders is None or role not in senders:
        raise NotAllowed(f"{kind} may not be sent by the session's {role.value}")
    check_allowed(kind, phase, granted)


def inventory_scope(item: str) -> str:
    return INVENTORY_PREFIX + item
