"""Bench-only broker launcher: ``python -m bench.launcher [tuning] -- <python -m broker arguments>``.

Applies :mod:`broker.tuning` (and a few experiments that only the benchmark needs) in the broker's
own process, then runs ``broker.cli.main`` unchanged, so tuning can be measured before the serve
options exist. ``--tls-read-buffer 0`` keeps asyncio's stock 256 KiB.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import sys
import threading
import time
from typing import Any

from bench.common import raise_nofile
from broker import tuning


def _malloc_trim_every(seconds: float) -> None:
    """Give freed heap pages back to the OS periodically (glibc only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)

    def loop() -> None:
        while True:
            time.sleep(seconds)
            libc.malloc_trim(0)

    threading.Thread(target=loop, daemon=True, name="malloc-trim").start()


def _config_defaults(**values: Any) -> None:
    """Override BrokerConfig defaults the CLI has no option for (fields that exist only)."""
    import dataclasses

    import broker.cli
    from broker.config import BrokerConfig

    known = {f.name for f in dataclasses.fields(BrokerConfig)}
    values = {k: v for k, v in values.items() if k in known}
    if values:
        patched = functools.partial(BrokerConfig, **values)
        broker.cli.BrokerConfig = patched  # type: ignore[attr-defined,assignment]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m bench.launcher [options] -- <broker arguments>")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m bench.launcher")
    parser.add_argument("--tls-read-buffer", type=int, default=tuning.DEFAULT_TLS_READ_BUFFER)
    parser.add_argument("--switch-interval", type=float, default=None)
    parser.add_argument("--malloc-trim", type=float, default=0.0, help="seconds between malloc_trim(0)")
    parser.add_argument(
        "--enroll-per-minute", type=int, default=0, help="lift the per-address enrollment rate limit"
    )
    parser.add_argument(
        "--session-read-buffer",
        type=int,
        default=None,
        help="TLS read buffer of agents that stream updates (0: keep the idle one; default: the broker's)",
    )
    args = parser.parse_args(argv[:split])
    raise_nofile()
    tuning.apply(
        tuning.Tuning(
            tls_read_buffer=args.tls_read_buffer or None,
            switch_interval=args.switch_interval,
        )
    )
    if args.malloc_trim > 0:
        _malloc_trim_every(args.malloc_trim)
    stock = 256 * tuning.KiB
    buffer = args.tls_read_buffer or stock
    # Every load process is 127.0.0.1 standing for thousands of subscribers' addresses: the cap on
    # unauthenticated connections per address (wire.gate, docs/hardening.md) would throttle the
    # reconnect storm as no single real address ever does.
    defaults: dict[str, Any] = {"max_unauthenticated_per_address": None}
    if args.session_read_buffer is not None:  # 0 measures without the broker's growth
        defaults["streaming_read_buffer"] = args.session_read_buffer or buffer
    if args.enroll_per_minute:
        defaults["enroll_attempts_per_minute"] = args.enroll_per_minute
    _config_defaults(**defaults)
    from broker.cli import main as broker_main

    broker_argv = argv[split + 1 :]
    if "serve" in broker_argv:  # the broker applies its own --tls-read-buffer at start: pass ours on
        broker_argv += ["--tls-read-buffer", str(buffer)]
    return broker_main(broker_argv)


if __name__ == "__main__":
    sys.exit(main())
