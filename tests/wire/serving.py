"""The one check every hostile test ends with: another, well-behaved agent and operator still get
a support session going on the same broker (issue 12: "the broker keeps serving everyone else").

A fresh contract is enrolled, its agent connects over mutual TLS and asks for help, an operator logs
in, sees the request in the queue and claims it by the support code, and the agent is asked for
consent. Every step waits with a bound; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from agent.enroll import enroll
from agent.identity import Identity
from helpdesk import HelpdeskClient
from tests.helpers import BrokerProcess, add_operator, enroll_args_from, login

_serial = itertools.count(1)


def client_context(
    broker: BrokerProcess, *, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(broker.data_dir / "ca.pem"))
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


async def _json(ws: Any) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.recv(), 15)
        if isinstance(frame, str):
            message: dict[str, Any] = json.loads(frame)
            if message.get("type") not in ("ping", "pong", "session_state"):
                return message


async def enrolled_identity(broker: BrokerProcess, work_dir: Path, contract: str) -> Identity:
    """A new contract, enrolled the way the agent does it (real CSR over /enroll)."""
    args = enroll_args_from(broker.cli("subscriber", "add", contract).stdout)
    token = next(a.split("=", 1)[1] for a in args if a.startswith("--token="))
    fingerprint = args[args.index("--ca-fingerprint") + 1]
    result = await asyncio.wait_for(
        enroll(
            broker_url=broker.url,
            contract_id=contract,
            token=token,
            ca_fingerprint=fingerprint,
            data_dir=work_dir / f"agent-{contract}",
            confirm=lambda _fp: True,
            machine_name=f"pc-{contract}",
        ),
        30,
    )
    return result.identity


async def assert_still_serves(broker: BrokerProcess, work_dir: Path) -> None:
    """Fail unless a new agent and a new operator can start a support session right now, and the
    broker has logged no traceback or fatal error so far."""
    n = next(_serial)
    contract = f"C-WELL-{n}"
    identity = await enrolled_identity(broker, work_dir, contract)
    account = add_operator(broker, f"well{n}")
    ctx = client_context(broker, cert=identity.cert_path, key=identity.key_path)
    async with connect(f"{broker.url}/agent", ssl=ctx, ping_interval=None, open_timeout=15) as agent:
        await agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
        assert (await _json(agent))["type"] == "hello"
        await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
        issued = await _json(agent)
        assert issued["type"] == "support_code", issued
        ca_pem = (broker.data_dir / "ca.pem").read_bytes()
        async with HelpdeskClient(broker.url, ca_pem=ca_pem) as op:
            await asyncio.wait_for(login(op, account), 30)
            queue = await asyncio.wait_for(op.queue(), 15)
            assert issued["session_id"] in {entry.session_id for entry in queue.requests}
            claimed = await asyncio.wait_for(op.claim(code=issued["code"]), 15)
            assert claimed.contract_id == contract
            asked = await _json(agent)
            assert asked["type"] == "consent_request", asked
            assert asked["session_id"] == issued["session_id"]
    log = broker.output.text() if broker.output else ""
    for sign in ("Traceback", "Fatal error", "Exception in callback"):
        assert sign not in log, f"the broker logged {sign!r}:\n{log[-4000:]}"
