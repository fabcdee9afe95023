"""Speed of the protocol codec: building, encoding and decoding typed control messages.

``python -m bench.codec_speed [--rounds 5] [--number 20000]``: for a few representative messages
(a mouse move, a ping, a session state with viewers and scopes, a claim), times construction,
``protocol.encode`` and ``protocol.decode`` with :mod:`timeit` (best of ``rounds``) and prints
microseconds per operation as JSON. Pure CPU, no I/O. To compare two versions of the code, run it
twice in the same session with ``PYTHONPATH`` pointing at each checkout and divide (see
docs/protocol.md, "Validation at construction").
"""

from __future__ import annotations

import argparse
import functools
import json
import timeit
from collections.abc import Callable

from protocol import decode, encode
from protocol.messages import Claim, InputEvent, Message, Ping, SessionState, Viewer

SID = "sess-0123456789abcdef"


def _samples() -> dict[str, Callable[[], Message]]:
    return {
        "input_move": lambda: InputEvent(session_id=SID, seq=7, kind="move", x=640, y=400),
        "ping": lambda: Ping(id="p-1", time=1_700_000_000.5),
        "claim": lambda: Claim(id="c-1", code="123456", scopes=("screen:view", "input:control")),
        "session_state": lambda: SessionState(
            session_id=SID,
            phase="active",
            contract_id="C-1001",
            machine_name="PC-01",
            operator="Sato",
            scopes={"screen:view": "granted", "input:control": "requested", "inventory:os": "denied"},
            viewers=(
                Viewer(name="Sato", role="operator"),
                Viewer(name="Ito", role="supervisor", read_only=True),
            ),
        ),
    }


def run(*, rounds: int, number: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6

    for name, build in _samples().items():
        message = build()
        data = encode(message)
        out[name] = {
            "construct_us": round(best(build), 3),
            "encode_us": round(best(functools.partial(encode, message)), 3),
            "decode_us": round(best(functools.partial(decode, data)), 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(json.dumps(run(rounds=args.rounds, number=args.number), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
