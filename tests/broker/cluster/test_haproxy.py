"""The front door: Debian's HAProxy started with the generated configuration passes TLS through to a
real broker process, so an agent enrolls and connects with its client certificate end to end."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cluster.haproxy import Backend, FrontDoor, HAProxyConfigError, main, parse_address, render
from tests.helpers import BrokerProcess, OutputTail, run_agent, start_agent, wait_until

from .natsserver import free_port


def haproxy_binary() -> str:
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if binary is None:
        pytest.fail("haproxy is not installed (scripts/bootstrap --system installs it)", pytrace=False)
    return binary


class HAProxy:
    def __init__(self, config: str, workdir: Path) -> None:
        self.path = workdir / "haproxy.cfg"
        self.path.write_text(config)
        self.proc: subprocess.Popen[str] | None = None
        self.output: OutputTail | None = None

    def start(self) -> None:
        check = subprocess.run(
            [haproxy_binary(), "-c", "-f", str(self.path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(self.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        self.output = OutputTail(self.proc.stdout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def show_stat(sock_path: Path) -> dict[str, str]:
    """Each server's status from HAProxy's stats socket (``show stat`` CSV)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock_path))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    out: dict[str, str] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "brokers" and row.get("svname") not in ("FRONTEND", "BACKEND"):
            out[row["svname"]] = row["status"]
    return out


def server_certificate(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "broker").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.e2e
def test_an_agent_enrolls_and_connects_through_haproxy_with_mutual_tls(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    front = free_port()
    stats = tmp_path / "haproxy.sock"
    dead = free_port()  # a second process that is down: the health check takes it out
    door = FrontDoor(
        listen=("127.0.0.1", front),
        backends=(Backend("broker1", "127.0.0.1", broker.port), Backend("broker2", "127.0.0.1", dead)),
        check_interval=0.5,
        maxconn=1000,
        stats_socket=str(stats),
    )
    haproxy = HAProxy(render(door), tmp_path)
    haproxy.start()
    agent = None
    try:
        # Health checks: TLS to GET /healthz on each process (the live one UP, the dead one DOWN).
        wait_until(
            lambda: stats.exists() and show_stat(stats) == {"broker1": "UP", "broker2": "DOWN"},
            timeout=30,
            what="broker1 UP and broker2 DOWN in HAProxy",
        )
        # TLS is passed through: the certificate at the front door is the broker's own.
        assert server_certificate(front) == server_certificate(broker.port)

        # Enrollment through the front door (no client certificate: /enroll) …
        args = broker.add_subscriber("C-HAP")
        at = args.index("--broker")
        args[at + 1] = f"wss://127.0.0.1:{front}"
        agent_dir = tmp_path / "agent"
        enrolled = run_agent(agent_dir, *args, "--machine-name", "pc-hap", stdin="y\n")
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        serial = enrolled.stdout.split("Client certificate ID: ")[1].split()[0]
        # … then the agent's /agent connection with its client certificate, which only the broker can
        # check: the broker shows the agent online under its certificate ID.
        agent = start_agent(agent_dir)
        wait_until(
            lambda: broker.agent_state(serial) == "online", timeout=30, what="agent online via HAProxy"
        )
        assert haproxy.proc is not None
        assert haproxy.proc.poll() is None
    finally:
        if agent is not None:
            agent.stop()
        haproxy.stop()


def test_generated_configuration_is_valid_for_debians_haproxy(tmp_path: Path) -> None:
    door = FrontDoor(
        listen=("::1", 8443),
        backends=tuple(Backend(f"broker{i}", "127.0.0.1", 9000 + i) for i in range(1, 4)),
        send_proxy=True,
    )
    path = tmp_path / "h.cfg"
    path.write_text(render(door))
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = path.read_text()
    assert "bind [::1]:8443" in text
    assert "mode tcp" in text
    assert "send-proxy-v2" in text
    assert "clitcpka-idle 60s" in text  # NAT entries kept alive by the kernel, not by the brokers
    assert "ssl crt" not in text  # HAProxy holds no certificate: TLS ends at the brokers


@pytest.mark.parametrize(
    "bad", ["localhost:1", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[zz]:1", "1.2.3.4:1\n"]
)
def test_addresses_are_validated(bad: str) -> None:
    with pytest.raises(HAProxyConfigError):
        parse_address(bad)


def test_the_command_line_refuses_bad_input_with_a_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "example.com:9001"]) == 2
    assert "error [invalid_field]" in capsys.readouterr().err
    assert main(["--ports", "9001-9002", "--listen", "127.0.0.1:8443"]) == 0
    out = capsys.readouterr().out
    assert "server broker1 127.0.0.1:9001" in out
    assert "server broker2 127.0.0.1:9002" in out
    with pytest.raises(HAProxyConfigError):
        FrontDoor(listen=("127.0.0.1", 1), backends=())
    with pytest.raises(HAProxyConfigError):
        Backend("bad name", "127.0.0.1", 1)
