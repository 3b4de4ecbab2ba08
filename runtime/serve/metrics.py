"""``GET /metrics``: Prometheus text, through prometheus_client (one registry per app).

Requests are counted and timed as they are answered; streams are read from the service's
counters at scrape time (``StreamCounters``), so a stream on a Ray replica is reported the
same way as a local one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from edgevlm.runtime.serve.events import LATENCY_BUCKETS_MS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # the *_created series say when a counter was made: noise for our dashboards


class ServeMetrics:
    def __init__(self, service):
        self.registry = CollectorRegistry()
        self.requests = Counter("edgevlm_requests", "HTTP API requests answered", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("edgevlm_request_seconds", "Time to answer a caption/ask/chat request",
                                 ["path"], registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(_StreamCollector(service))

    def observe(self, path: str, status: int, seconds: float | None) -> None:
        self.requests.labels(path, str(status)).inc()
        if seconds is not None and status < 400:
            self.latency.labels(path).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _StreamCollector:
    """Per-stream frames, captions, utterances, skipped frames, errors and latencies; the
    request queue's depth and its 503s."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        stats = self.service.stats()
        yield GaugeMetricFamily("edgevlm_queue_waiting", "Requests waiting for an engine", value=stats["queue_waiting"])
        yield GaugeMetricFamily("edgevlm_queue_capacity", "Requests that may wait before 503",
                                value=stats["queue_capacity"])
        yield CounterMetricFamily("edgevlm_busy_rejections", "Requests refused with 503: queue full",
                                  value=stats["busy_rejections"])
        streams = stats["streams"]
        families = {name: CounterMetricFamily(f"edgevlm_stream_{name}", help_text, labels=["stream"])
                    for name, help_text in (("frames", "Frames narrated"), ("captions", "Captions made"),
                                            ("utterances", "Captions said"), ("questions", "Questions answered"))}
        skipped = CounterMetricFamily("edgevlm_stream_skipped", "Frames not captioned (unchanged) and captions "
                                      "not said (duplicate)", labels=["stream", "reason"])
        errors = CounterMetricFamily("edgevlm_stream_errors", "Source lost, damage skipped, early end, failure",
                                     labels=["stream", "kind"])
        running = GaugeMetricFamily("edgevlm_stream_running", "1 while the stream runs", labels=["stream"])
        latencies = {key: HistogramMetricFamily(f"edgevlm_stream_{name}_seconds", help_text, labels=["stream"])
                     for key, name, help_text in (("caption_ms", "frame_to_caption", "Frame captured to caption ready"),
                                                  ("speech_ms", "frame_to_speech", "Frame captured to caption said"),
                                                  ("answer_ms", "question_to_answer", "Question asked to answer ready"))}
        for stream_id, counters in streams.items():
            for name, family in families.items():
                family.add_metric([stream_id], counters[name])
            for reason in ("unchanged", "duplicate"):
                skipped.add_metric([stream_id, reason], counters["skipped"].get(reason, 0))
            for kind, count in counters["errors"].items():
                errors.add_metric([stream_id, kind], count)
            running.add_metric([stream_id], 1 if counters.get("state") in ("starting", "running") else 0)
            for key, family in latencies.items():
                histogram = counters[key]
                buckets = [(str(bound / 1000), count) for bound, count in zip(LATENCY_BUCKETS_MS, histogram["buckets"])]
                buckets.append(("+Inf", histogram["count"]))
                family.add_metric([stream_id], buckets, histogram["sum"] / 1000)
        yield from families.values()
        yield skipped
        yield errors
        yield running
        yield from latencies.values()
