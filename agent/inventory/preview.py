"""Local preview of the 別紙5 inventory: show the subscriber exactly what would be sent, and send nothing.

Why: consent under 別紙5 is meaningful only if the subscriber can see what each item really contains on
their PC. ``render_preview`` prints, per item, the label in the wording of 別紙5 and the exact JSON value of
the wire message (the same ``to_wire`` the agent sends), with one deliberate difference: a typed-in router
password is masked, so the preview never puts the secret on screen. ``run_preview`` backs ``python -m agent
inventory --preview``: it collects every item locally and prints; it contacts neither the broker nor the
router's login. (Router discovery does send one SSDP M-SEARCH on the LAN, which is how the model is read.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, TextIO

from agent.inventory.collect import collect, default_collector
from agent.inventory.items import BESSHI5_NUMBER, Item, label
from agent.inventory.model import ItemResult
from agent.inventory.router import SSDP_MULTICAST, probe_router

__all__ = ["render_preview", "run_preview"]

_TEXT: Final = {
    "ja": {
        "title": "送信されるインベントリ情報（プレビュー：何も送信していません）",
        "note": "承諾しない項目があっても、本サービスの利用には何ら制限はありません（別紙5）。",
        "unavailable": "取得できません",
        "masked": "ルータのパスワードはこの画面では伏せています（送信時は入力どおり暗号化して保存）。",
        "item": "別紙5",
    },
    "en": {
        "title": "Inventory that would be sent (preview: nothing has been sent)",
        "note": "Refusing any item does not restrict the service in any way (Annex 5).",
        "unavailable": "not available",
        "masked": "The router password is masked here (it is sent as typed and stored encrypted).",
        "item": "Annex 5",
    },
}


def _lang(lang: str) -> str:
    """Japanese for "ja…", English otherwise (DESIGN §1: Japanese prompts with English fallback)."""
    return "ja" if lang.lower().startswith("ja") else "en"


def render_preview(results: Sequence[ItemResult], *, lang: str) -> str:
    """Human-readable preview: label, then the exact wire value (JSON) or the reason it is unavailable."""
    text = _TEXT[_lang(lang)]
    lines = [text["title"], text["note"], ""]
    masked = False
    for result in results:
        lines.append(f"[{text['item']} ({BESSHI5_NUMBER[result.item]})] {label(result.item, lang)}")
        wire = result.to_wire(mask_password=True)
        if result.available:
            rendered = json.dumps(wire["value"], ensure_ascii=False, indent=2, sort_keys=True)
            lines.extend("    " + line for line in rendered.splitlines())
        else:
            lines.append(f"    {text['unavailable']}: {result.reason}")
        masked = masked or result.credentials is not None
        lines.append("")
    if masked:
        lines.append(text["masked"])
    return "\n".join(lines).rstrip("\n") + "\n"


def run_preview(
    *,
    lang: str,
    cert_serial: str | None,
    out: TextIO,
    router_target: tuple[str, int] = SSDP_MULTICAST,
    router_timeout: float = 2.0,
) -> int:
    """Collect all eleven items on this machine and print the preview to ``out``; returns the exit status
    (0)."""
    results = collect(
        list(Item),
        collector=default_collector(),
        cert_serial=cert_serial,
        router_probe=lambda: probe_router(target=router_target, timeout=router_timeout),
        router_credentials=None,
    )
    out.write(render_preview(results, lang=lang))
    out.flush()
    return 0
