"""The agent's command line: what the helpdesk hands over must parse, whatever the token looks like."""

from __future__ import annotations

from agent.cli import build_parser


def test_enroll_command_accepts_a_token_that_starts_with_a_dash() -> None:
    # secrets.token_urlsafe() may start with "-"; the broker prints --token=… so argparse keeps it.
    args = build_parser().parse_args(
        [
            "enroll",
            "--broker",
            "wss://127.0.0.1:8443",
            "--contract-id=C-1",
            "--token=-abcdefghijklmnopqrstu",
            "--ca-fingerprint",
            "sha256:" + "ab" * 32,
        ]
    )
    assert args.token == "-abcdefghijklmnopqrstu"
    assert args.contract_id == "C-1"


def test_router_target_must_be_host_and_port() -> None:
    args = build_parser().parse_args(["inventory", "--preview", "--router-target", "127.0.0.1:1900"])
    assert args.router_target == ("127.0.0.1", 1900)
