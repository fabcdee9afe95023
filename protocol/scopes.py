"""The consent scopes the protocol knows, and nothing else (第31条1項④, 別紙5).

``screen:view`` and ``input:control`` are asked separately; inventory is one scope per item of
別紙5, ``inventory:<item>``. A scope outside this list (``inventory:network``) is not something the
subscriber could be asked about in the terms' words, so the codec refuses it (``invalid_field``)
rather than passing it on to be shown raw on the subscriber's PC (issue 13).

The item ids are the agent's wire ids (``agent.inventory.items.Item``; a test keeps the two
equal) and the console's list in ``broker/static/js/scopes.js`` is generated from here
(``python -m protocol.scopes``; a test checks it is current).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ALL_SCOPES",
    "DENIED",
    "GRANTED",
    "INVENTORY_ITEMS",
    "REQUESTED",
    "SCOPE_CONTROL",
    "SCOPE_PATTERN",
    "SCOPE_RESTART",
    "SCOPE_STATUSES",
    "SCOPE_VIEW",
    "TIMEOUT",
    "WITHDRAWN",
    "ScopeStatus",
    "render_js",
]

SCOPE_VIEW = "screen:view"
SCOPE_CONTROL = "input:control"
SCOPE_RESTART = "system:restart"
"""Restarting the PC at the operator's request (issue 16): asked like control, default no; it
lets the operator send one ``restart_request``, and the session waits for the PC to come back."""

INVENTORY_ITEMS: tuple[str, ...] = (
    "os",  # (1) オペレーティングシステムの種類、バージョン
    "cert_id",  # (2) クライアント証明書ID
    "machine_name",  # (3) マシン名
    "mac_addresses",  # (4) MAC アドレス
    "volume_serial",  # (5) ボリュームシリアル番号
    "volume_free",  # (6) 空き容量
    "default_browser",  # (7) デフォルトブラウザの種類、バージョン
    "default_mail",  # (8) デフォルトメールソフトの種類、バージョン
    "cpu",  # (9) CPU 種類、動作周波数
    "memory",  # (10) メモリ容量
    "router",  # (11) ルータの機種、ログインアカウント及びログインパスワード
)
"""The eleven items of 別紙5, in its order."""

ALL_SCOPES: tuple[str, ...] = (
    SCOPE_VIEW,
    SCOPE_CONTROL,
    SCOPE_RESTART,
    *(f"inventory:{item}" for item in INVENTORY_ITEMS),
)

SCOPE_PATTERN = "^(" + "|".join(ALL_SCOPES) + r")\Z"
"""A regular expression matching exactly the known scopes (for ``msgspec.Meta(pattern=…)``)."""


ScopeStatus = Literal["requested", "granted", "denied", "timeout", "withdrawn"]
"""Where one scope stands in a session (``session_state.scopes``); see :data:`SCOPE_STATUSES`."""

REQUESTED: Final[ScopeStatus] = "requested"
GRANTED: Final[ScopeStatus] = "granted"
DENIED: Final[ScopeStatus] = "denied"
TIMEOUT: Final[ScopeStatus] = "timeout"
WITHDRAWN: Final[ScopeStatus] = "withdrawn"

SCOPE_STATUSES: dict[ScopeStatus, str] = {
    REQUESTED: "asked; the subscriber has not answered yet (nothing flows)",
    GRANTED: "allowed by the subscriber's signed answer and in force",
    DENIED: "refused by the subscriber, or still unanswered when the session ended",
    TIMEOUT: "no answer in time: the default, deny (第31条1項④)",
    WITHDRAWN: "was granted, taken back by the subscriber or ended with the session",
}
"""The status table: every scope status, in order, with what it means. Only ``granted`` lets
anything through; a scope never asked has no status (the console shows ``none``)."""


def render_js() -> str:
    """The generated part of ``broker/static/js/scopes.js``."""
    items = "".join(f'  "{item}",\n' for item in INVENTORY_ITEMS)
    statuses = ", ".join(f'"{status}"' for status in ("none", *SCOPE_STATUSES))
    return (
        f'export const SCOPE_RESTART = "{SCOPE_RESTART}";\nexport const INVENTORY_ITEMS = [\n{items}];\n'
        '/** The scope statuses of protocol/scopes.py, plus "none" for a scope never asked. */\n'
        f"export const STATUSES = [{statuses}];\n"
    )


if __name__ == "__main__":
    print(render_js(), end="")
