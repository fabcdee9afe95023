"""The agent's own record of what the subscriber granted: the one authority the agent acts on.

DESIGN §2: "The agent is the authority on consent: it keeps its own record built only from the
subscriber's answers, shows that record, and acts only on it. The broker enforces the same rules
as a second line, never as the only one." (第31条1項④: remote operation only with the
subscriber's consent; 別紙5: inventory item by item.)

:class:`ConsentRecord` is :class:`agent.consent.ConsentState` (which changes only through the
subscriber's answers, ``/grant``, ``/withdraw`` and the end, each with a signed receipt) plus the
two questions the session asks of it for every message from the broker:

- :meth:`ConsentRecord.permits`: may a message of this kind be acted on now? The scope each kind
  needs comes from the protocol's one table (:data:`protocol.session.REQUIREMENTS`), so the agent
  and the broker can never disagree on which scope a message needs;
- :meth:`ConsentRecord.disagreements`: which scopes a broker's ``session_state`` shows differently
  from this record. Such a state changes nothing here; the session only logs the scope names.

Pure: no I/O, no clock (times are arguments), like the rest of the consent core.
"""

from __future__ import annotations

from protocol.messages import ConsentRequest, SessionState, Viewer
from protocol.receipts import ConsentReceipt
from protocol.scopes import GRANTED
from protocol.session import INVENTORY_PREFIX, REQUIREMENTS, Phase

from .consent import (
    INPUT_CONTROL,
    NO_OPERATOR,
    SCREEN_VIEW,
    ConsentEnded,
    ConsentState,
    WrongSession,
    order_scopes,
)

__all__ = ["AGENT_CHECKED_KINDS", "ConsentRecord"]

AGENT_CHECKED_KINDS = frozenset({"input", "screen_refresh", "monitor_layout", "screen_update"})
"""Message kinds (keys of ``protocol.session.REQUIREMENTS``) the agent checks against its own
record before it applies, answers or sends them."""


class ConsentRecord(ConsentState):
    """What the subscriber has granted in one session, and what that lets each message do."""

    def __init__(self, *, session_id: str, serial: str, operator: str = "") -> None:
        super().__init__(session_id=session_id, serial=serial, operator=operator)
        self._persons: dict[str, bool] = {}
        self._unexpected: tuple[str, ...] = ()

    # -- persons (invited colleagues, transfers; docs/consent.md) ---------------------------------

    @property
    def allowed_persons(self) -> frozenset[str]:
        """Operator accounts the subscriber allowed by name to see the screen."""
        return frozenset(name for name, ok in self._persons.items() if ok)

    def person(self, request: ConsentRequest, allowed: bool | None, now: float) -> ConsentReceipt:
        """The subscriber's answer (None: no answer in time = no) about the new person of
        ``request`` (an invited colleague, or the transfer's target). A transfer allowed also
        drops ``input:control``: control is never carried over to another person."""
        if self.ended:
            raise ConsentEnded(f"session {self.session_id} has ended")
        if request.session_id != self.session_id:
            raise WrongSession(f"consent request for session {request.session_id}, not {self.session_id}")
        account = request.viewer_account or ""
        if not account:
            raise WrongSession("a question about a person must name the person's account")
        prefix = "transfer_" if request.transfer else "viewer_"
        outcome = "allowed" if allowed else ("timeout" if allowed is None else "denied")
        granted = self.granted
        if allowed and request.transfer:
            granted = granted - {INPUT_CONTROL}
            self._operator = request.viewer or account
        elif not self._operator:
            self._operator = request.operator
        receipt = ConsentReceipt(
            session_id=self.session_id,
            serial=self.serial,
            operator=request.operator or NO_OPERATOR,
            decision=prefix + outcome,  # type: ignore[arg-type]
            asked=(SCREEN_VIEW,),
            granted=order_scopes(granted),
            denied=(),
            time=now,
            viewer=account,
        )
        self._granted = frozenset(granted)
        self._persons[account] = bool(allowed)
        return receipt

    def note_viewers(self, viewers: tuple[Viewer, ...]) -> tuple[str, ...]:
        """Check the broker's list of who can see the screen against the persons allowed: an
        invited colleague (a read-only operator with an account) the subscriber did not allow, or
        anyone the subscriber refused by name. While any is shown, :meth:`permits` refuses every
        screen kind: the agent stops sharing rather than trust the broker's per-viewer delivery.
        Returns their display names (to tell the subscriber)."""
        unexpected = tuple(
            v.name
            for v in viewers
            if v.account
            and (
                self._persons.get(v.account) is False
                or (v.role == "operator" and v.read_only and not self._persons.get(v.account))
            )
        )
        self._unexpected = unexpected
        return unexpected

    def permits(self, kind: str) -> bool:
        """Whether a message of ``kind`` (a key of ``REQUIREMENTS``) may be acted on now.

        Only the scope matters here (the phase is the broker's bookkeeping): ``input`` needs
        ``input:control``; ``screen_refresh``, ``monitor_layout`` and ``screen_update`` need
        ``screen:view``. A kind without a scope in the table (chat) is always permitted.
        Unknown kinds are refused.
        """
        entry = REQUIREMENTS.get(kind)
        if entry is None:
            return False
        scope = entry[1]
        if scope == SCREEN_VIEW and self._unexpected:
            return False  # someone the subscriber did not allow is shown as watching
        return scope is None or self.allows(scope)

    def permits_item(self, item: str) -> bool:
        """Whether the 別紙5 inventory item ``item`` may be collected and sent now."""
        return self.allows(INVENTORY_PREFIX + item)

    def granted_in_order(self) -> tuple[str, ...]:
        """The scopes in force, in display order: what the subscriber is shown as allowed."""
        return order_scopes(self.granted)

    def disagreements(self, state: SessionState) -> tuple[str, ...]:
        """Scopes whose status in the broker's ``state`` contradicts this record.

        A scope the broker shows as ``granted`` that is not granted here, or one granted here
        that the broker shows as anything else (denied, withdrawn, missing). A scope the broker
        shows as ``requested`` while not granted here is no contradiction (a question is on its
        way). Only scope names are returned: they are safe to log.
        """
        if state.session_id != self.session_id:
            return ()
        shown = {scope for scope, status in state.scopes.items() if status == GRANTED}
        if Phase(state.phase) is Phase.ENDED:
            return ()
        return order_scopes(shown ^ set(self.granted))
