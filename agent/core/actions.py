"""What :class:`agent.core.AgentCore` asks its adapter to do: the only way the core has effects.

Frozen, slotted, keyword-only classes; all of them form :data:`Action`. Every outgoing message is a
``protocol.messages`` object in :class:`Send` (consent receipts are already signed, by the signer
the adapter passed in :class:`agent.core.CoreConfig`), so two cores can be joined in memory.
Texts for the subscriber come rendered in their language (:func:`agent.i18n.t` is a pure lookup).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.messages import ConsentRequest, InputEvent, Message, Viewer

__all__ = [
    "Action",
    "AllowInput",
    "AskConsent",
    "AskPerson",
    "CloseQuestion",
    "CollectInventory",
    "DenyInput",
    "Finish",
    "Ignored",
    "InjectInput",
    "Reboot",
    "RefreshSharing",
    "SaveResume",
    "Say",
    "Send",
    "ShowChat",
    "ShowIndicator",
    "StartSharing",
    "StopSharing",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Send ``message`` to the broker."""

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class AskConsent:
    """Put the scope question to the subscriber (terminal, window or both); answer with
    :class:`agent.core.inputs.Answered` carrying ``question``. Control needs a typed yes."""

    question: str
    request: ConsentRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class AskPerson:
    """Ask whether a new person (``request.viewer``) may see the screen; answer with
    :class:`agent.core.inputs.PersonAnswered`."""

    question: str
    request: ConsentRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseQuestion:
    """The question is void (timed out, session ended): close its window or prompt."""

    question: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """Show the subscriber ``text`` (already in their language, made safe). ``notice`` ones (who
    joined, who watches) are held like chat while a question is open."""

    text: str
    notice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowChat:
    """A chat line from ``sender`` (shown through :mod:`agent.session_view`, never raw)."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSharing:
    """Start capturing ``monitor`` and sending frames: the one keyframe of this grant."""

    monitor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSharing:
    """Stop capturing at once (withdrawn, a person not allowed, disconnected, ended)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshSharing:
    """A viewer asked: send a keyframe next (``monitor``: switch first; ``behind``: slow down)."""

    behind: bool = False
    monitor: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowInput:
    """``input:control`` is in force: remote input may be applied (the guard still filters)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DenyInput:
    """Control is not in force: release held keys and buttons, apply nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectInput:
    """Apply this remote input event (the record grants control; the consent guard decides last)."""

    event: InputEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowIndicator:
    """Show (or update) the always-on-top indicator; ``granted`` empty = take it down."""

    viewers: tuple[Viewer, ...]
    granted: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectInventory:
    """Run exactly these 別紙5 collectors (item ids) and answer with
    :class:`agent.core.inputs.InventoryCollected`; ``ask_router_login``: ask the subscriber for
    the router's login first (別紙5 (11); never read from the router or the system)."""

    items: tuple[str, ...]
    ask_router_login: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveResume:
    """Remember the session to continue after a restart (:func:`agent.resume.save_resumable`)."""

    session_id: str
    operator: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reboot:
    """Restart the PC (:func:`agent.session_restart.run_reboot`); on failure forget the saved
    session and feed :class:`agent.core.inputs.RebootFailed`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A broker message contradicting the record changed nothing: log ``what`` and the scope
    names (never content)."""

    what: str
    scopes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """The session is over for this agent: exit with ``exit_code``."""

    exit_code: int = 0


Action = (
    Send
    | AskConsent
    | AskPerson
    | CloseQuestion
    | Say
    | ShowChat
    | StartSharing
    | StopSharing
    | RefreshSharing
    | AllowInput
    | DenyInput
    | InjectInput
    | ShowIndicator
    | CollectInventory
    | SaveResume
    | Reboot
    | Ignored
    | Finish
)
