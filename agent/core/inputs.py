"""What an adapter feeds :class:`agent.core.AgentCore` besides broker messages (which go in as
``protocol.messages`` objects through :meth:`AgentCore.receive`).

Each input is a frozen, slotted, keyword-only class; all of them form :data:`Input`. They come
from the subscriber (an answer typed in the terminal or clicked in a window, ``/withdraw``, the
indicator's buttons, Ctrl-C), from the platform (the connection, the capture, the inventory
collectors, the restart command) — never from the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.messages import InventoryItem

__all__ = [
    "Answered",
    "CaptureReady",
    "Connected",
    "Disconnected",
    "EndRequested",
    "Granted",
    "Input",
    "InventoryCollected",
    "PersonAnswered",
    "RebootFailed",
    "Typed",
    "Withdrawn",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    """The connection to the broker is up (first time or after a reconnect)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """The connection dropped: nothing flows until the broker confirms the session again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureReady:
    """A screen can be captured (the adapter has a frame source); ``monitor`` is the one shown."""

    monitor: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """The subscriber's answer to the scope question ``question`` (an ``AskConsent.question``).

    ``chosen`` is what they picked (None: no answer, the same as the timeout). ``control_confirmed``
    says they typed the extra yes that control needs (第31条1項④: control is asked separately);
    without it ``input:control`` is dropped from ``chosen``.
    """

    question: str
    chosen: frozenset[str] | None
    control_confirmed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonAnswered:
    """The subscriber's answer about a new person (``AskPerson.question``); None = no answer."""

    question: str
    allowed: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawn:
    """The subscriber takes scopes back (``/withdraw``, the indicator's button)."""

    scopes: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Granted:
    """The subscriber allows scopes on their own (``/grant`` after its confirmation question)."""

    scopes: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Typed:
    """A chat line typed by the subscriber."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndRequested:
    """The subscriber ends the session (``/end``, the indicator, Ctrl-C, ``agent end``, a signal)."""

    reason: str = "ended by the subscriber"


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryCollected:
    """What the collectors of a ``CollectInventory`` action found (only the items it named)."""

    items: tuple[InventoryItem, ...]
    router_account: str | None = None
    router_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RebootFailed:
    """The restart command of a ``Reboot`` action did not run."""


Input = (
    Connected
    | Disconnected
    | CaptureReady
    | Answered
    | PersonAnswered
    | Withdrawn
    | Granted
    | Typed
    | EndRequested
    | InventoryCollected
    | RebootFailed
)
