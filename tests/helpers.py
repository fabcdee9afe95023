"""Shared test helpers: real broker and agent processes, in-process brokers, enrolled identities.

Everything runs for real on 127.0.0.1 with real TLS: no mocks of the network or the CA. Waiting
helpers poll for a state a user would check (an agent shown online), with a generous limit that
only bounds a hung test; they are not timing assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.identity import Identity

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LISTEN_RE = re.compile(r"broker listening on wss://127\.0\.0\.1:(\d+)")


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("BROKER_CA_PASSPHRASE", None)
    env.update(extra)
    return env


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(interval)


class OutputTail:
    """Collects a child's stdout lines in a thread so the pipe never fills up."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


@dataclass
class BrokerProcess:
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    output: OutputTail | None = None
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=child_env)

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def start(self) -> BrokerProcess:
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "broker",
                "--data-dir",
                str(self.data_dir),
                "serve",
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.output = OutputTail(self.proc.stdout)

        def listening() -> int | None:
            assert self.proc is not None
            assert self.output is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited early:\n{self.output.text()}")
            match = LISTEN_RE.search(self.output.text())
            return int(match.group(1)) if match else None

        self.port = wait_until(listening, what="broker to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, "-m", "broker", "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"broker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def add_subscriber(self, contract_id: str) -> list[str]:
        """``subscriber add`` → the agent enroll arguments it printed (after ``python -m agent``)."""
        out = self.cli("subscriber", "add", contract_id).stdout
        return enroll_args_from(out)

    def agent_state(self, serial: str) -> str | None:
        for line in self.cli("agents").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == serial:
                return parts[3]
        return None


def enroll_args_from(cli_output: str) -> list[str]:
    line = next(line for line in cli_output.splitlines() if line.startswith("python -m agent enroll "))
    return line.split()[3:]


def run_agent(
    data_dir: Path, *args: str, stdin: str = "", timeout: float = 60, lang: str = "en"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "agent", "--data-dir", str(data_dir), "--lang", lang, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


@dataclass
class AgentProcess:
    data_dir: Path
    proc: subprocess.Popen[str]
    output: OutputTail

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def spawn_agent(
    data_dir: Path, command: str, *args: str, lang: str = "en", env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], OutputTail]:
    """``python -m agent COMMAND`` with a pipe for its keyboard and its output collected."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "agent", "--data-dir", str(data_dir), "--lang", lang, command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or child_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, OutputTail(proc.stdout)


def start_agent(data_dir: Path, *args: str, lang: str = "en") -> AgentProcess:
    return AgentProcess(data_dir, *spawn_agent(data_dir, "run", *args, lang=lang))


# -- in-process broker (same real TLS listener, faster to start) ----------------------------------


@dataclass
class InProcessBroker:
    broker: Any
    store: Any
    """The broker's own ``broker.storage.Storage`` (awaited)."""
    pki: Any
    config: Any

    @property
    def url(self) -> str:
        return str(self.broker.url)

    def ca_pem(self) -> bytes:
        return bytes(self.pki.ca.cert_pem)

    def client_context(self, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.ca_pem().decode())
        if cert is not None and key is not None:
            ctx.load_cert_chain(cert, key)
        return ctx

    async def enroll_agent(self, contract: str, data_dir: Path) -> Identity:
        """A subscriber ``contract`` added to this broker and its agent enrolled for real (token, CSR)
        into ``data_dir``; the agent's identity (certificate and key files)."""
        from agent.enroll import enroll
        from broker.enrollment import issue_token

        await self.store.subscribers.add(contract, now=time.time(), actor="test")
        token = await issue_token(self.store, contract, now=time.time(), ttl=3600, actor="test")
        result = await enroll(
            broker_url=self.url,
            contract_id=contract,
            token=token,
            ca_fingerprint=self.pki.ca.fingerprint,
            data_dir=data_dir,
            confirm=lambda _fp: True,
            machine_name="pc",
        )
        return result.identity


@contextlib.asynccontextmanager
async def in_process_broker(
    data_dir: Path, *, database: str | None = None, port: int = 0, **config: Any
) -> AsyncIterator[InProcessBroker]:
    from broker.config import BrokerConfig
    from broker.pki import load_pki
    from broker.server import Broker

    cfg = BrokerConfig(data_dir=data_dir, port=port, **config)
    pki = load_pki(cfg, now=datetime.now(UTC), env={})
    broker = Broker(cfg, pki, database=database)
    await broker.start()
    try:
        yield InProcessBroker(broker, broker.storage, pki, cfg)
    finally:
        await broker.close()


@contextlib.contextmanager
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- sessions: operators, a subscriber's support process -------------------------------------------


@dataclass
class OperatorAccount:
    name: str
    password: str
    totp_secret: str

    def totp(self, at: float | None = None) -> str:
        import pyotp

        return str(pyotp.TOTP(self.totp_secret).at(at if at is not None else time.time()))


def add_operator(broker: BrokerProcess, name: str, role: str = "operator") -> OperatorAccount:
    import pyotp

    out = broker.cli(
        "operator", "add", name, "--role", role, "--display-name", f"{name.title()} (helpdesk)"
    ).stdout
    password = out.split("initial password (one-time, must be changed at first login): ")[1].split()[0]
    uri = out.split("TOTP provisioning URI (scan into an authenticator app): ")[1].split()[0]
    secret = pyotp.parse_uri(uri).secret
    return OperatorAccount(name=name, password=password, totp_secret=secret)


async def login(client: Any, account: OperatorAccount) -> None:
    """Log in; change the one-time initial password when the broker asks for it."""
    info = await client.login(account.name, account.password, account.totp())
    if info.password_change_required:
        new = account.password + "-changed-1"
        await client.change_password(account.password, new)
        account.password = new


@dataclass
class SupportProcess:
    """``python -m agent request-support`` with a pipe for the subscriber's keyboard."""

    proc: subprocess.Popen[str]
    output: OutputTail

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str, *, timeout: float = 30.0, count: int = 1) -> str:
        wait_until(lambda: self.output.text().count(text) >= count, timeout=timeout, what=repr(text))
        return self.output.text()

    def support_code(self) -> str:
        out = self.wait_for("Support code: ")
        return out.split("Support code: ")[1].split()[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


CONFIRM_PROMPT = 'Type "yes"'
"""The agent's confirmation question for control (after choosing it, or after ``/grant``)."""


def confirm_control(support: SupportProcess) -> None:
    """Confirm control once the agent asks (issue 11: control needs a second, typed yes)."""
    support.wait_for(CONFIRM_PROMPT)
    support.type("yes")


def grant_control(support: SupportProcess) -> None:
    """``/grant control`` and its confirmation."""
    seen = support.output.text().count(CONFIRM_PROMPT)
    support.type("/grant control")
    support.wait_for(CONFIRM_PROMPT, count=seen + 1)
    support.type("yes")


def start_support(
    data_dir: Path, *args: str, lang: str = "en", env: dict[str, str] | None = None
) -> SupportProcess:
    return SupportProcess(*spawn_agent(data_dir, "request-support", *args, lang=lang, env=env))


def enrolled_agent(broker: BrokerProcess, data_dir: Path, contract_id: str) -> str:
    """Register a contract and enroll an agent for it; returns the client certificate ID."""
    result = run_agent(
        data_dir, *broker.add_subscriber(contract_id), "--machine-name", f"pc-{contract_id}", stdin="y\n"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("Client certificate ID: ")[1].split()[0]


def grant_as_asked(request: dict[str, Any], session: str, identity: Identity) -> str:
    """A raw agent's answer to ``request`` (a ``consent_request``): every scope asked granted, in a
    receipt signed with the agent's key, as the ``consent_decision`` message text to send."""
    from agent.receipts import decision_message
    from certs import load_private_key
    from protocol import encode
    from protocol.receipts import ConsentReceipt

    asked = tuple(request["scopes"])
    receipt = ConsentReceipt(
        session_id=session,
        serial=identity.serial,
        operator=request["operator"],
        decision="answered",
        asked=asked,
        granted=asked,
        denied=(),
        time=time.time(),
    )
    key = load_private_key(identity.key_path.read_bytes())
    return encode(decision_message(receipt, key, id="d")).decode()


def closed_by_server(socks: list[socket.socket], wait: float) -> list[socket.socket]:
    """Of ``socks`` (to a server that sends nothing first), those the server closed — a reset or an
    EOF — within ``wait`` seconds."""
    time.sleep(wait)
    readable, _, _ = select.select(socks, [], [], 0)
    closed = []
    for sock in readable:
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
        if data == b"":
            closed.append(sock)
    return closed
