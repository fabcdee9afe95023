"""The report as rows (figure, broker, baseline, ratio, target) for the terminal and for Markdown."""

from __future__ import annotations

import math
from typing import Any

from broker.tuning import DEFAULT_TLS_READ_BUFFER as TUNED

KiB = 1024
STOCK_BUFFER = 256 * KiB
HEADER = ("figure", "broker", "baseline", "ratio", "target", "met")


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}×"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def summary_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    idle = report.get("idle", {})
    echo = {r["agents"]: r for r in idle.get("echo_tuned", [])}
    for r in idle.get("broker_tuned", []):
        e = echo.get(r["agents"])
        kib = r["kib_per_agent"]
        rows.append(
            (
                f"1. RSS per idle agent, {r['agents']:,} agents ({TUNED // KiB} KiB TLS buffer)",
                _f(kib, 1, " KiB"),
                _f(e["kib_per_agent"] if e else None, 1, " KiB") + " echo",
                _ratio(kib, e["kib_per_agent"] if e else None),
                "≤ 48 KiB",
                _met(kib <= 48),
            )
        )
        rows.append(
            (
                f"1. idle CPU, {r['agents']:,} agents (heartbeats)",
                _f(r["idle_cpu_fraction"] * 100, 2, " %"),
                _f(e["idle_cpu_fraction"] * 100 if e else None, 2, " %") + " echo",
                _ratio(r["idle_cpu_fraction"], e["idle_cpu_fraction"] if e else None),
                "",
                "-",
            )
        )
    stock_echo = {r["agents"]: r for r in idle.get("echo_stock", [])}
    for r in idle.get("broker_stock", []):
        e = stock_echo.get(r["agents"])
        rows.append(
            (
                f"1. RSS per idle agent, {r['agents']:,} agents (asyncio's 256 KiB buffer)",
                _f(r["kib_per_agent"], 1, " KiB"),
                _f(e["kib_per_agent"] if e else None, 1, " KiB") + " echo",
                _ratio(r["kib_per_agent"], e["kib_per_agent"] if e else None),
                "",
                "-",
            )
        )
    storm = report.get("reconnect_storm")
    if storm:
        back = storm["all_back_seconds_from_kill"]
        rows.append(
            (
                f"2. reconnect storm, {storm['agents']:,} agents: all back after SIGTERM",
                _f(back, 1, " s") if back is not None else "not all",
                f"restart {_f(storm['restart_seconds'], 1, ' s')}, "
                f"shutdown {_f(storm['shutdown_seconds'], 1, ' s')}",
                "-",
                "≤ 60 s, none gives up" if storm["agents"] >= 10_000 else "(target is for 10,000)",
                _met(back is not None and back <= 60 and storm["gave_up"] == 0),
            )
        )
        rows.append(
            (
                "2. reconnect storm: 99 % / 99.9 % of agents back after SIGTERM",
                f"{_f(storm.get('seconds_to_99pct_from_kill'), 1, ' s')} / "
                f"{_f(storm.get('seconds_to_99_9pct_from_kill'), 1, ' s')}",
                "",
                "-",
                "",
                "-",
            )
        )
        rows.append(
            (
                "2. reconnect storm: failed handshakes / gave up / peak CPU",
                f"{storm['failed_handshakes']:,} / {storm['gave_up']} / "
                f"{_f(storm['peak_cpu_fraction'] * 100, 0, ' %')}",
                "",
                "-",
                "",
                "-",
            )
        )
    relay = report.get("relay", [])

    def find(server: str, buffer: int, sessions: int, size: int) -> dict[str, Any] | None:
        for r in relay:
            if (r["server"], r["tls_read_buffer"], r["sessions"], r["size"]) == (
                server,
                buffer,
                sessions,
                size,
            ):
                found: dict[str, Any] = r
                return found
        return None

    for r in relay:
        if r["server"] != "broker" or r["tls_read_buffer"] != TUNED:
            continue  # the broker as shipped: small buffer while idle, 256 KiB once streaming
        bare = find("bare relay", STOCK_BUFFER, r["sessions"], r["size"])
        raw = find("raw TLS", STOCK_BUFFER, r["sessions"], r["size"])
        stock = find("broker", STOCK_BUFFER, r["sessions"], r["size"])
        flat = find("broker, no growth", TUNED, r["sessions"], r["size"])
        label = f"3. relay {r['sessions']} session(s), {r['size'] // KiB} KiB updates"
        ratio = r["mb_per_s"] / bare["mb_per_s"] if bare and bare["mb_per_s"] else None
        rows.append(
            (
                label + ", MB/s",
                _f(r["mb_per_s"], 0),
                _f(bare["mb_per_s"] if bare else None, 0) + " bare relay",
                _ratio(r["mb_per_s"], bare["mb_per_s"] if bare else None),
                "≥ 0.70× bare",
                _met(None if ratio is None else ratio >= 0.70),
            )
        )
        rows.append(
            (
                label + ", MB per server CPU-second",
                _f(r["mb_per_cpu_s"], 0),
                _f(bare["mb_per_cpu_s"] if bare else None, 0) + " bare relay",
                _ratio(r["mb_per_cpu_s"], bare["mb_per_cpu_s"] if bare else None),
                "",
                "-",
            )
        )
        rows.append(
            (
                label + ", msg/s",
                _f(r["messages_per_s"], 0),
                _f(raw["messages_per_s"] if raw else None, 0) + " raw TLS",
                _ratio(r["messages_per_s"], raw["messages_per_s"] if raw else None),
                "",
                "-",
            )
        )
        if stock:
            rows.append(
                (
                    label + f": {TUNED // KiB} KiB idle, 256 KiB once streaming, vs 256 KiB",
                    _f(r["mb_per_s"], 0) + " MB/s",
                    _f(stock["mb_per_s"], 0) + " MB/s stock",
                    _ratio(r["mb_per_s"], stock["mb_per_s"]),
                    "no loss",
                    _met(r["mb_per_s"] >= 0.9 * stock["mb_per_s"]),
                )
            )
        if stock and flat:
            rows.append(
                (
                    label + f": {TUNED // KiB} KiB throughout vs 256 KiB",
                    _f(flat["mb_per_s"], 0) + " MB/s",
                    _f(stock["mb_per_s"], 0) + " MB/s stock",
                    _ratio(flat["mb_per_s"], stock["mb_per_s"]),
                    "",
                    "-",
                )
            )
    lat = report.get("latency", [])
    bare_lat = {r["active_sessions"]: r for r in lat if r["server"] == "bare relay"}
    for r in lat:
        if r["server"] != "broker":
            continue
        b = bare_lat.get(r["active_sessions"])
        for kind, name in (("update", "agent → operator"), ("input", "operator input → agent")):
            added = r[kind]["p99_ms"] - b[kind]["p99_ms"] if b else None
            rows.append(
                (
                    f"4. {name}, {r['active_sessions']} active sessions: p50 / p99",
                    f"{_f(r[kind]['p50_ms'], 2)} / {_f(r[kind]['p99_ms'], 2)} ms",
                    (f"{_f(b[kind]['p50_ms'], 2)} / {_f(b[kind]['p99_ms'], 2)} ms bare" if b else "-"),
                    f"{added:+.2f} ms p99" if added is not None else "-",
                    "added p99 < 5 ms at 50" if r["active_sessions"] == 50 else "",
                    _met(added < 5) if (added is not None and r["active_sessions"] == 50) else "-",
                )
            )
    enroll = report.get("enrollment")
    if enroll:
        rows.append(
            (
                "5. CSR signing per second",
                _f(enroll["csr_signs_per_s"], 0),
                _f(enroll["ecdsa_p256_signs_per_s"], 0) + " raw ECDSA",
                _ratio(enroll["csr_signs_per_s"], enroll["ecdsa_p256_signs_per_s"]),
                "",
                "-",
            )
        )
        rows.append(
            (
                f"5. full enrollments per second ({enroll['concurrency']} in flight)",
                _f(enroll["enrollments_per_s"], 1),
                _f(enroll["baseline_connects_per_s"], 0) + " TLS WS connects",
                _ratio(enroll["enrollments_per_s"], enroll["baseline_connects_per_s"]),
                "",
                "-",
            )
        )
    fp = report.get("frame_pipeline")
    if fp and fp.get("rows"):
        for r in fp["rows"]:
            rows.append(
                (
                    f"6. frame pipeline 1920×1080, {r['scene']} (fps)",
                    _f(r["capture_fps"], 1) + " with capture",
                    _f(r["synthetic_fps"], 1) + " synthetic",
                    _ratio(r["capture_fps"], r["synthetic_fps"]),
                    "",
                    "-",
                )
            )
    return rows


def text_table(rows: list[tuple[str, ...]]) -> str:
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md(rows: list[list[str]] | list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (
        f"{m['cpu_model']}, {m['logical_cores']} logical cores ({m['physical_cores']} physical), "
        f"{m['memory_gib']} GiB, Python {m['python']}, websockets {m['websockets']}, {m['openssl']}; "
        f"load average {m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end"
    )


def _triple(lat: dict[str, float]) -> str:
    return f"{_f(lat['p50_ms'], 2)} / {_f(lat['p99_ms'], 2)} / {_f(lat['max_ms'], 1)}"


def details_markdown(report: dict[str, Any]) -> str:
    parts: list[str] = []
    idle = report.get("idle", {})
    rows = []
    for key, label in (
        ("broker_tuned", f"broker, {TUNED // KiB} KiB"),
        ("echo_tuned", f"bare echo, {TUNED // KiB} KiB"),
        ("broker_stock", "broker, 256 KiB"),
        ("echo_stock", "bare echo, 256 KiB"),
    ):
        for r in idle.get(key, []):
            rows.append(
                [
                    label,
                    f"{r['agents']:,}",
                    _f(r["rss_mib"], 0),
                    _f(r["kib_per_agent"], 1),
                    _f(r["idle_cpu_fraction"] * 100, 2),
                    _f(r["idle_cpu_us_per_agent_s"], 2),
                    _f(r["pings_per_s"], 0),
                    _f(r["connects_per_s"], 0),
                    _f(r["connect_cpu_fraction"] * 100, 0),
                    str(r["failed_handshakes"]),
                ]
            )
    if rows:
        parts.append("### 1. Idle agents\n")
        parts.append(
            _md(
                rows,
                (
                    "server",
                    "agents",
                    "RSS MiB",
                    "KiB/agent",
                    "idle CPU %",
                    "µs CPU/agent·s",
                    "pings/s",
                    "connects/s",
                    "CPU % while connecting",
                    "failed handshakes",
                ),
            )
        )
    if report.get("tuning"):
        parts.append("\n### 1b. What cuts per-connection memory (broker, same number of idle agents)\n")
        parts.append(
            _md(
                [
                    [
                        t["variant"],
                        f"{t['agents']:,}",
                        _f(t["kib_per_agent"], 1),
                        _f(t["idle_cpu_fraction"] * 100, 2),
                    ]
                    for t in report["tuning"]
                ],
                ("setting", "agents", "KiB/agent", "idle CPU %"),
            )
        )
    storm = report.get("reconnect_storm")
    if storm:
        parts.append("\n### 2. Reconnect storm\n")
        parts.append(
            _md(
                [
                    [
                        f"{storm['agents']:,}",
                        _f(storm["shutdown_seconds"], 1),
                        _f(storm["restart_seconds"], 1),
                        _f(storm["all_back_seconds_from_listen"], 1),
                        _f(storm["all_back_seconds_from_kill"], 1),
                        f"{storm['reconnected']:,}",
                        f"{storm['failed_handshakes']:,}",
                        str(storm["gave_up"]),
                        _f(storm["peak_cpu_fraction"] * 100, 0),
                        _f(storm["mean_cpu_fraction"] * 100, 0),
                    ]
                ],
                (
                    "agents",
                    "shutdown s",
                    "restart s",
                    "all back s after listening",
                    "all back s after SIGTERM",
                    "reconnected",
                    "failed handshakes",
                    "gave up",
                    "peak CPU %",
                    "mean CPU %",
                ),
            )
        )
        parts.append(
            "\nConnected agents over time (seconds after SIGTERM, connected): "
            + ", ".join(f"{t}: {c}" for t, c in storm["timeline"])
        )
    if report.get("relay"):
        parts.append("\n### 3. Relay throughput (agent → operator, delivered)\n")
        parts.append(
            _md(
                [
                    [
                        r["server"],
                        f"{r['tls_read_buffer'] // KiB} KiB",
                        str(r["sessions"]),
                        f"{r['size'] // KiB} KiB",
                        _f(r["mb_per_s"], 0),
                        _f(r["messages_per_s"], 0),
                        _f(r["server_cpu_fraction"] * 100, 0),
                        _f(r["mb_per_cpu_s"], 0),
                        str(r["refresh_requests"]),
                    ]
                    for r in report["relay"]
                ],
                (
                    "server",
                    "TLS buffer",
                    "sessions",
                    "update",
                    "MB/s",
                    "msg/s",
                    "server CPU %",
                    "MB per CPU-s",
                    "keyframe requests",
                ),
            )
        )
    if report.get("latency"):
        parts.append("\n### 4. Latency of one probe session beside N active sessions (30 × 20 KiB/s each)\n")
        parts.append(
            _md(
                [
                    [
                        r["server"],
                        str(r["active_sessions"]),
                        _triple(r["update"]),
                        _triple(r["input"]),
                        f"{_f(r['background_updates_per_s_delivered'], 0)} of {r['background_target_per_s']}",
                        _f(r["server_cpu_fraction"] * 100, 0),
                    ]
                    for r in report["latency"]
                ],
                (
                    "server",
                    "active sessions",
                    "update ms p50/p99/max",
                    "input ms p50/p99/max",
                    "background updates/s delivered",
                    "server CPU %",
                ),
            )
        )
    profiles = report.get("profiles") or {}
    for name, prof in profiles.items():
        parts.append(f"\n### Profile: {name}\n")
        if "error" in prof:
            parts.append(f"py-spy failed: {prof['error']}")
            continue
        parts.append(
            f"{prof['samples']} samples (py-spy, 100 Hz, non-blocking); "
            f"{prof['idle_in_select_pct']} % waiting in select.\n"
        )
        parts.append(
            _md(
                [[name_, f"{pct}"] for name_, pct in prof["self_pct"]],
                ("function (self time)", "% of samples"),
            )
        )
        parts.append("")
        parts.append(
            _md(
                [[name_, f"{pct}"] for name_, pct in prof["inclusive_pct"]],
                ("function (inclusive)", "% of samples"),
            )
        )
    fp = report.get("frame_pipeline")
    if fp:
        parts.append("\n### 6. Frame pipeline (`python -m bench.frame_pipeline`)\n")
        parts.append("```\n" + (fp.get("output") or fp.get("error", "")).strip() + "\n```")
    return "\n".join(parts)


def markdown(report: dict[str, Any], *, preface: str = "") -> str:
    plan = report["plan"]["name"]
    lines = [
        "# Performance",
        "",
        preface.strip(),
        "",
        f"Measured by `.venv/bin/python -m bench` ({plan} plan) on {report['started_at']}, "
        f"{report['elapsed_seconds'] / 60:.1f} minutes.",
        "",
        f"Machine: {machine_line(report)}.",
        "",
        "## Summary (each figure beside its baseline, same run)",
        "",
        _md(summary_rows(report), HEADER),
        "",
        "## Details",
        "",
        details_markdown(report),
        "",
    ]
    return "\n".join(lines)
