"""Section 5: CSR signing and enrollments per second, beside bare TLS WebSocket connects."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from bench import fixtures
from bench.plans import TUNED
from bench.processes import Context, Server, load_process, running


def enrollment(ctx: Context) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from broker.config import BrokerConfig
    from broker.pki import load_pki
    from certs import build_csr, generate_private_key

    plan = ctx.plan
    ca = load_pki(BrokerConfig(data_dir=ctx.data_dir), now=datetime.now(UTC), env={}).ca
    csrs = [build_csr(generate_private_key(), common_name=f"S-{i}") for i in range(plan.csr_count)]
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i, csr in enumerate(csrs):
        ca.sign_client_csr(csr, expected_common_name=f"S-{i}", now=now)
    sign_rate = plan.csr_count / (time.perf_counter() - t0)
    key = ec.generate_private_key(ec.SECP256R1())
    t0 = time.perf_counter()
    for i in range(plan.csr_count):
        key.sign(i.to_bytes(8, "big") * 4, ec.ECDSA(hashes.SHA256()))
    ecdsa_rate = plan.csr_count / (time.perf_counter() - t0)

    tokens = fixtures.enrollment_tokens(ctx.data_dir, plan.enroll_count)
    tokens_path = ctx.data_dir / "bench-tokens.json"
    tokens_path.write_text(json.dumps(tokens))
    concurrency = "4"
    # The broker allows 20 enrollments per source address and minute (BrokerConfig
    # .enroll_attempts_per_minute); every load process here is 127.0.0.1, so it is lifted.
    lifted = ("--enroll-per-minute", "1000000")
    with running(Server(ctx, "broker", tls_read_buffer=TUNED, extra=lifted)) as server:
        child = load_process(
            ctx,
            "enroll",
            server.url,
            "--tokens",
            str(tokens_path),
            "--fingerprint",
            ctx.fingerprint,
            "--count",
            str(plan.enroll_count),
            "--concurrency",
            concurrency,
            "--max-seconds",
            "300",
            name="enroll",
        )
        full = child.wait_for("result", timeout=330)
        child.stop()
    with running(Server(ctx, "echo", tls_read_buffer=TUNED)) as server:
        child = load_process(
            ctx,
            "enroll",
            server.url,
            "--baseline",
            "--count",
            str(plan.enroll_count * 5),
            "--concurrency",
            concurrency,
            "--max-seconds",
            "300",
            name="connects",
        )
        base = child.wait_for("result", timeout=330)
        child.stop()
    result = {
        "csr_signs_per_s": sign_rate,
        "ecdsa_p256_signs_per_s": ecdsa_rate,
        "enrollments": full["done"],
        "enrollment_failures": full["failed"],
        "enrollments_per_s": full["done"] / full["elapsed"],
        "baseline_connects": base["done"],
        "baseline_connects_per_s": base["done"] / base["elapsed"],
        "concurrency": int(concurrency),
        "rate_limit_lifted": "enroll_attempts_per_minute (default 20 per address)",
    }
    ctx.log(
        f"  CSR signing {sign_rate:.0f}/s (raw ECDSA {ecdsa_rate:.0f}/s); enrollments "
        f"{result['enrollments_per_s']:.1f}/s (bare TLS WebSocket connects "
        f"{result['baseline_connects_per_s']:.0f}/s)"
    )
    return result
