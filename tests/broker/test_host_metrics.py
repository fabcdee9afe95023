"""The session host's and listener's feeds (broker/host_metrics.py): closed label sets, one counter
per outcome, read back from the rendered exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from broker.host_metrics import RelayMetrics, handshake_failed
from broker.metrics import BrokerMetrics, render
from broker.relay import ScreenPush


def _samples(metrics: BrokerMetrics) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(render(metrics).decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_failed_handshakes_by_path_and_a_hostile_path_adds_no_series() -> None:
    metrics = BrokerMetrics("n1")
    failed = handshake_failed(metrics)
    failed(None)
    failed("/agent?x=1")
    failed("/operator")
    failed("/enroll")
    failed("/../../etc/passwd")  # not one of our WebSocket paths: no series for it
    samples = _samples(metrics)
    handshakes = {k: v for k, v in samples.items() if k.startswith("broker_handshakes_total")}
    assert handshakes == {
        "broker_handshakes_total{outcome=failed,path=tls}": 1,
        "broker_handshakes_total{outcome=failed,path=agent}": 1,
        "broker_handshakes_total{outcome=failed,path=operator}": 1,
        "broker_handshakes_total{outcome=failed,path=enroll}": 1,
    }


def test_screen_outcomes_count_drops_by_reason_and_bytes_by_direction() -> None:
    metrics = BrokerMetrics("n1")
    relayed = RelayMetrics(metrics)
    for result in (ScreenPush.QUEUED, ScreenPush.BEHIND, ScreenPush.DROPPED, ScreenPush.REPLACED):
        relayed.screen(result)
    relayed.to_operator.inc(65536)
    relayed.to_agent.inc(120)
    relayed.no_consent.inc()
    with relayed.storage("read"):
        pass
    samples = _samples(metrics)
    assert samples["broker_relay_drops_total{reason=queue_full}"] == 1
    assert samples["broker_relay_drops_total{reason=stale_frame}"] == 2
    assert samples["broker_relay_drops_total{reason=no_consent}"] == 1
    assert samples["broker_relay_bytes_total{direction=to_operator}"] == 65536
    assert samples["broker_relay_bytes_total{direction=to_agent}"] == 120
    assert samples["broker_storage_seconds_count{op=read}"] == 1


def test_without_broker_metrics_the_host_counts_into_a_registry_nobody_reads() -> None:
    relayed = RelayMetrics(None)
    relayed.screen(ScreenPush.BEHIND)
    assert (
        relayed.metrics.registry.get_sample_value("broker_relay_drops_total", {"reason": "queue_full"}) == 1
    )
