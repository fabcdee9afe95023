"""Load generators, each in its own process: ``python -m bench.loadgen MODE …``.

``idle``     thousands of simulated agents with real client certificates speaking the real protocol
             (hello, agent_status, then heartbeats), reconnecting after a drop with the agent's
             own backoff (exponential, full jitter). Against the broker or the bare echo server.
             Heartbeats (``--heartbeat json|frame|none``, ``--interval``; switched at run time by
             ``{"cmd": "heartbeat", "mode": …, "interval": …}``): a JSON ``ping`` (agents before
             issue 15) or a WebSocket Ping frame (since), from one scheduler per process that sends
             ``connected / interval`` a second round-robin, each at its own time, evenly spread.
``relay``    S sessions, each an agent link and an operator link (claimed with a support code and a
             signed consent receipt on the broker; joined by path on the bare relay; a single TLS
             stream for the raw TLS sink). Runs throughput (windowed, so the broker never has to
             drop) or paced (updates/s) phases on command, measuring latency agent → operator and
             operator input → agent in this process's own clock.
``enroll``   full enrollments (``agent.enroll.enroll``) with a few in flight, or bare TLS WebSocket
             connects against the echo server (the baseline).

Commands arrive as JSON lines on stdin; results and a status line every half second go to stdout.
Every loop is bounded by a count and a deadline.

Each mode lives in its own module (``bench.load_idle``, ``bench.load_relay``, ``bench.load_enroll``;
what they share in ``bench.load_io``); this module is the command line and re-exports them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from bench.common import raise_nofile
from bench.load_enroll import run_enroll
from bench.load_idle import HEARTBEAT, PERMANENT, STABLE_AFTER, IdleAgents, run_idle
from bench.load_io import MAX_SIZE, client_context, commands, recv_json, until_quit
from bench.load_relay import (
    LENGTH,
    OFFSET,
    STAMP,
    Frames,
    Session,
    paced,
    run_relay,
    setup_bare_session,
    setup_broker_session,
    sink_throughput,
    throughput,
)
from broker import tuning

__all__ = [
    "HEARTBEAT",
    "LENGTH",
    "MAX_SIZE",
    "OFFSET",
    "PERMANENT",
    "STABLE_AFTER",
    "STAMP",
    "Frames",
    "IdleAgents",
    "Session",
    "client_context",
    "commands",
    "main",
    "paced",
    "recv_json",
    "run_enroll",
    "run_idle",
    "run_relay",
    "setup_bare_session",
    "setup_broker_session",
    "sink_throughput",
    "throughput",
    "until_quit",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    idle = sub.add_parser("idle")
    idle.add_argument("--protocol", choices=("broker", "echo"), default="broker")
    idle.add_argument("--start", type=int, default=0)
    idle.add_argument("--count", type=int, required=True)
    idle.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    idle.add_argument("--heartbeat", choices=("json", "frame", "none"), default="json")
    idle.add_argument(
        "--interval", type=float, default=HEARTBEAT, help="seconds between an agent's heartbeats"
    )
    relay = sub.add_parser("relay")
    relay.add_argument("--target", choices=("broker", "bare", "sink"), required=True)
    relay.add_argument("--sessions", type=int, default=1)
    relay.add_argument("--first", type=int, default=0, help="index of the first agent / session")
    relay.add_argument(
        "--agent-url", default=None, help="broker the agents dial (default --url; another cluster process)"
    )
    enroll = sub.add_parser("enroll")
    enroll.add_argument("--tokens", default=None, help="JSON list of [contract, token]")
    enroll.add_argument("--fingerprint", default="")
    enroll.add_argument("--count", type=int, default=100)
    enroll.add_argument("--concurrency", type=int, default=4)
    enroll.add_argument(
        "--baseline", action="store_true", help="bare TLS WebSocket connects to the echo server"
    )
    for p in (idle, relay, enroll):
        p.add_argument("--url", required=True)
        p.add_argument("--ca", required=True)
        p.add_argument("--manifest", default=None)
        p.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    raise_nofile()
    tuning.set_tls_read_buffer(tuning.DEFAULT_TLS_READ_BUFFER)  # keeps the load processes small
    run: dict[str, Callable[[argparse.Namespace], Any]] = {
        "idle": run_idle,
        "relay": run_relay,
        "enroll": run_enroll,
    }
    asyncio.run(run[args.mode](args))


if __name__ == "__main__":
    main()
