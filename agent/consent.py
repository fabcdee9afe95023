"""What the subscriber has allowed in one support session, and the receipt for every change.

Nothing is seen, touched or collected without the subscriber's say-so (第31条1項④: the subscriber
accepts the operator's remote operation; 別紙5: inventory only "本契約者の承諾を得て", item by item).
So the state starts empty and only grows by an explicit answer or an explicit ``/grant``:

- ``answer``: the subscriber answered a consent request; what was asked and not chosen is denied;
- ``timeout``: no answer in time, which is a "no" to everything asked (default deny, DESIGN §5);
- ``withdraw`` / ``grant``: the subscriber changes their mind during the session (any time);
- ``end``: the session is over, nothing stays granted.

Every call returns a :class:`protocol.receipts.ConsentReceipt` whose ``granted`` is the complete set
in force afterwards; :mod:`agent.receipts` signs it for the broker's audit log (DESIGN §4).

Pure like the ``protocol`` core: no I/O, and the clock is an argument (aioquic style), so tests
need no sleeping. The agent asks :meth:`ConsentState.allows` again before applying any input or
sending any frame, whatever the broker forwarded (DESIGN §4: both sides enforce the scopes).

Errors (all :class:`agent.errors.AgentError`)::

    ConsentError        "consent_error"
    ├── UnknownScope    "unknown_scope"    not screen:view, input:control or inventory:<id>
    ├── WrongSession    "wrong_session"    a request for another session than this state's
    └── ConsentEnded    "consent_ended"    the session ended; nothing can be granted any more
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protocol.messages import ConsentRequest
from protocol.receipts import ConsentReceipt, Decision
from protocol.scopes import ALL_SCOPES as PROTOCOL_SCOPES
from protocol.scopes import INVENTORY_ITEMS, SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW
from protocol.session import INVENTORY_PREFIX as PROTOCOL_INVENTORY_PREFIX

from .errors import AgentError, AgentErrorCode

__all__ = [
    "ALL_SCOPES",
    "INPUT_CONTROL",
    "INVENTORY_PREFIX",
    "INVENTORY_SCOPES",
    "ITEM_LABELS",
    "NO_OPERATOR",
    "SCREEN_VIEW",
    "SYSTEM_RESTART",
    "ConsentEnded",
    "ConsentError",
    "ConsentState",
    "UnknownScope",
    "WrongSession",
    "is_scope",
    "order_scopes",
    "scope_label",
]

SCREEN_VIEW: Final = SCOPE_VIEW
INPUT_CONTROL: Final = SCOPE_CONTROL
SYSTEM_RESTART: Final = SCOPE_RESTART
"""Restart the PC at the operator's request (issue 16); asked like control, default no."""
INVENTORY_PREFIX: Final = PROTOCOL_INVENTORY_PREFIX

NO_OPERATOR: Final = "-"
"""Operator name in a receipt written before any operator asked anything (the field may not be empty)."""

_KNOWN: Final = frozenset(PROTOCOL_SCOPES)
"""The protocol's one list of scopes (:mod:`protocol.scopes`): a scope the wire refuses is
refused here too."""

# 別紙5 (1)-(11), in the order of the terms. Used only when agent.inventory.items cannot be imported
# (it owns these labels); the words follow the terms so the prompt shows what the subscriber agreed to.
_FALLBACK_ITEM_LABELS: Final[dict[str, tuple[str, str]]] = {
    "os": ("オペレーティングシステムの種類、バージョン", "Operating system type and version"),
    "cert_id": ("クライアント証明書ID", "Client certificate ID"),
    "machine_name": ("マシン名", "Machine name"),
    "mac_addresses": ("MACアドレス", "MAC addresses"),
    "volume_serial": ("ハードディスクドライブのボリュームシリアル番号", "System volume serial number"),
    "volume_free": ("ハードディスクドライブの空き容量", "System volume free space"),
    "default_browser": ("デフォルトブラウザの種類、バージョン", "Default browser and version"),
    "default_mail": ("デフォルトメールソフトの種類、バージョン", "Default mail client and version"),
    "cpu": ("CPUの種類、動作周波数", "CPU type and clock"),
    "memory": ("メモリ容量", "Memory size"),
    "router": (
        "ルータの機種、ログインアカウント及びログインパスワード",
        "Router model, login account and password",
    ),
}


def _item_labels() -> dict[str, tuple[str, str]]:
    try:
        from .inventory.items import LABELS
    except ImportError:  # the inventory package is optional for the consent side
        return dict(_FALLBACK_ITEM_LABELS)
    labels = {item.value: pair for item, pair in LABELS.items()}
    return labels or dict(_FALLBACK_ITEM_LABELS)


ITEM_LABELS: Final[dict[str, tuple[str, str]]] = _item_labels()
"""Inventory item id → (Japanese, English) label, in 別紙5 order."""

INVENTORY_SCOPES: Final[tuple[str, ...]] = tuple(f"{INVENTORY_PREFIX}{item}" for item in INVENTORY_ITEMS)
"""One scope per 別紙5 item, in the order of the terms (:data:`protocol.scopes.INVENTORY_ITEMS`)."""

ALL_SCOPES: Final[tuple[str, ...]] = PROTOCOL_SCOPES
"""Every scope, in display order: the protocol's list (:data:`protocol.scopes.ALL_SCOPES`)."""

_FIXED_LABELS: Final[dict[str, tuple[str, str]]] = {
    SCREEN_VIEW: ("画面を見る", "View your screen"),
    INPUT_CONTROL: ("マウスとキーボードを操作する", "Control your mouse and keyboard"),
    SYSTEM_RESTART: ("パソコンの再起動", "Restart your computer"),
}

_ORDER: Final[dict[str, int]] = {scope: n for n, scope in enumerate(ALL_SCOPES)}


def _is_ja(lang: str) -> bool:
    return lang.lower().startswith("ja")


def is_scope(scope: str) -> bool:
    """True when ``scope`` is one the protocol knows (:mod:`protocol.scopes`)."""
    return scope in _KNOWN


def scope_label(scope: str, lang: str) -> str:
    """What the subscriber reads for ``scope``: Japanese for ``lang`` "ja…", else English.

    An inventory item this agent does not know (a newer broker) is shown by its raw id rather
    than hidden, so the subscriber never consents to something unnamed.
    """
    ja = _is_ja(lang)
    fixed = _FIXED_LABELS.get(scope)
    if fixed is not None:
        return fixed[0] if ja else fixed[1]
    if scope.startswith(INVENTORY_PREFIX):
        item = scope[len(INVENTORY_PREFIX) :]
        pair = ITEM_LABELS.get(item)
        name = (pair[0] if ja else pair[1]) if pair is not None else item
        return f"情報の取得: {name}" if ja else f"Collect: {name}"
    return scope


def order_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Distinct scopes in display order (view, control, then 別紙5 order, then unknown ones sorted).

    Receipts list ``granted`` and ``denied`` in this order so equal states give equal bytes.
    """
    return tuple(sorted(set(scopes), key=lambda s: (_ORDER.get(s, len(_ORDER)), s)))


def _unique(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(scopes))


class ConsentError(AgentError):
    code = AgentErrorCode.CONSENT_ERROR


class UnknownScope(ConsentError):
    code = AgentErrorCode.UNKNOWN_SCOPE


class WrongSession(ConsentError):
    code = AgentErrorCode.WRONG_SESSION


class ConsentEnded(ConsentError):
    code = AgentErrorCode.CONSENT_ENDED


class ConsentState:
    """The scopes the subscriber has granted in one session; every change returns a receipt.

    ``serial`` is the agent certificate's hex serial (別紙5 (2)) that will sign the receipts.
    ``operator`` is remembered from the latest consent request, so a later ``/withdraw`` names
    the operator it was given to.
    """

    def __init__(self, *, session_id: str, serial: str, operator: str = "") -> None:
        self._session_id = session_id
        self._serial = serial
        self._operator = operator
        self._granted: frozenset[str] = frozenset()
        self._ended = False

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def operator(self) -> str:
        return self._operator

    @property
    def granted(self) -> frozenset[str]:
        """Every scope in force now."""
        return self._granted

    @property
    def ended(self) -> bool:
        return self._ended

    def allows(self, scope: str) -> bool:
        """Whether ``scope`` is granted now: ask before every input event and every frame."""
        return not self._ended and scope in self._granted

    # -- decisions ---------------------------------------------------------------------------------

    def answer(self, request: ConsentRequest, granted: Iterable[str], now: float) -> ConsentReceipt:
        """The subscriber answered ``request``: ``granted`` (∩ asked) is allowed, the rest asked is denied.

        Scopes granted earlier and not asked again stay granted; a scope asked again and not
        chosen this time is no longer granted (the newer answer wins).
        """
        asked = self._asked(request)
        chosen = set(granted) & set(asked)
        denied = [s for s in asked if s not in chosen]
        return self._decide("answered", asked, (self._granted - set(asked)) | chosen, denied, now)

    def timeout(self, request: ConsentRequest, now: float) -> ConsentReceipt:
        """No answer within ``request.timeout``: every scope asked is denied (default deny, DESIGN §5)."""
        asked = self._asked(request)
        return self._decide("timeout", asked, self._granted - set(asked), asked, now)

    def withdraw(self, scopes: Iterable[str], now: float) -> ConsentReceipt:
        """The subscriber takes ``scopes`` back (any time, 第31条1項④); ``denied`` lists what was in force."""
        wanted = self._checked(scopes)
        removed = self._granted & wanted
        return self._decide("withdrawn", (), self._granted - wanted, order_scopes(removed), now)

    def grant(self, scopes: Iterable[str], now: float) -> ConsentReceipt:
        """The subscriber allows ``scopes`` on their own initiative (e.g. ``/grant control``)."""
        wanted = self._checked(scopes)
        return self._decide("granted", (), self._granted | wanted, (), now)

    def end(self, now: float) -> ConsentReceipt:
        """The session is over: nothing stays granted; ``denied`` lists what was in force until now."""
        receipt = self._decide("ended", (), frozenset(), order_scopes(self._granted), now)
        self._ended = True
        return receipt

    # -- helpers -----------------------------------------------------------------------------------

    def _asked(self, request: ConsentRequest) -> tuple[str, ...]:
        if request.session_id != self._session_id:
            raise WrongSession(f"consent request for session {request.session_id}, not {self._session_id}")
        asked = _unique(request.scopes)
        self._checked(asked)
        self._operator = request.operator
        return asked

    def _checked(self, scopes: Iterable[str]) -> frozenset[str]:
        result = frozenset(scopes)
        for scope in result:
            if not is_scope(scope):
                raise UnknownScope(f"not a consent scope: {scope!r}")
        return result

    def _decide(
        self,
        decision: Decision,
        asked: tuple[str, ...],
        granted: Iterable[str],
        denied: Iterable[str],
        now: float,
    ) -> ConsentReceipt:
        if self._ended:
            raise ConsentEnded(f"session {self._session_id} has ended")
        new = frozenset(granted)
        receipt = ConsentReceipt(
            session_id=self._session_id,
            serial=self._serial,
            operator=self._operator or NO_OPERATOR,
            decision=decision,
            asked=asked,
            granted=order_scopes(new),
            denied=tuple(denied),
            time=now,
        )
        self._granted = new
        return receipt
