"""Preview: the subscriber sees each 別紙5 item and its exact value; the router password is masked; nothing
sent."""

from __future__ import annotations

import io
import json
import socket

import pytest

from agent.inventory.items import Item
from agent.inventory.model import ItemResult, RouterCredentials
from agent.inventory.preview import render_preview, run_preview

RESULTS = [
    ItemResult.ok(Item.OS, {"family": "linux", "name": "Debian GNU/Linux"}),
    ItemResult.unavailable(
        Item.VOLUME_SERIAL, "the root filesystem is overlay (overlay), which has no filesystem UUID"
    ),
    ItemResult(
        item=Item.ROUTER,
        available=True,
        value={"model": {"manufacturer": "NEC", "model_name": "WX3000HP"}},
        reason=None,
        credentials=RouterCredentials("admin", "hunter2-secret"),
    ),
]


def test_japanese_preview() -> None:
    text = render_preview(RESULTS, lang="ja")
    assert "[別紙5 (1)] オペレーティングシステムの種類、バージョン" in text
    assert "[別紙5 (5)] ハードディスクドライブのボリュームシリアル番号" in text
    assert "取得できません: the root filesystem is overlay" in text
    assert "本サービスの利用には何ら制限はありません" in text
    assert '"model_name": "WX3000HP"' in text
    assert "hunter2-secret" not in text
    assert '"password": "********"' in text
    assert '"account": "admin"' in text


def test_english_preview_shows_exact_wire_value() -> None:
    text = render_preview(RESULTS[:1], lang="en")
    assert "[Annex 5 (1)] Operating system type and version" in text
    expected = json.dumps(RESULTS[0].to_wire()["value"], ensure_ascii=False, indent=2, sort_keys=True)
    assert all("    " + line in text for line in expected.splitlines())
    assert "masked" not in text


def test_run_preview_collects_everything_locally() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    out = io.StringIO()
    status = run_preview(
        lang="en", cert_serial="1f2e", out=out, router_target=("127.0.0.1", closed_port), router_timeout=0.2
    )
    assert status == 0
    text = out.getvalue()
    for n in range(1, 12):
        assert f"[Annex 5 ({n})]" in text
    assert '"1F2E"' in text
    assert "no UPnP Internet Gateway Device answered within 0.2 s" in text


@pytest.mark.parametrize("lang", ["ja", "ja_JP.UTF-8"])
def test_run_preview_japanese(lang: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    out = io.StringIO()
    run_preview(
        lang=lang, cert_serial=None, out=out, router_target=("127.0.0.1", closed_port), router_timeout=0.1
    )
    assert "送信されるインベントリ情報" in out.getvalue()
    assert "[別紙5 (2)] クライアント証明書ID" in out.getvalue()
