"""Command-line value types of ``serve``'s cluster options (``--node-id``, ``--cluster-listen``,
``--proxy-protocol-from``, ``--metrics-from``): argparse shows their message and exits with 2."""

from __future__ import annotations

import argparse
import ipaddress

from .haproxy import HAProxyConfigError, parse_address
from .signals import InvalidSignal, check_node_id

__all__ = ["listen_address", "network", "node_id"]


def node_id(text: str) -> str:
    """1–64 characters of ``[A-Za-z0-9_-]`` (one NATS subject token)."""
    try:
        return check_node_id(text)
    except InvalidSignal as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def listen_address(text: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT``, an IP literal (no names)."""
    try:
        return parse_address(text)
    except HAProxyConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def network(text: str) -> str:
    """An address or a network (``10.0.0.5``, ``10.0.0.0/24``, ``::1``), normalised."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address or network: {text!r}") from None
