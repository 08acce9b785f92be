"""Prometheus metrics of the ingest path; one set per app, on the app's own registry."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)


class Labelled(Generic[M]):
    """A labelled metric whose child per label values is looked up once: prometheus_client's
    `labels` validates and takes a lock on every call (about 1.5 µs, several times per message).
    The label values here come from small fixed sets (transports, codecs, lanes)."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Labelled(Counter(
            "mx_ingest_received_total", "Readings handed to the pipeline", ["transport", "lane"], registry=registry,
        ))
        self.decode_errors = Labelled(Counter(
            "mx_ingest_decode_errors_total", "Payloads that failed to decode",
            ["transport", "codec"], registry=registry,
        ))
        # Per transport AND codec (json, json_batch, mx1, ctwing, onenet, generic, gb26875; "unknown"
        # for a payload no codec claims): payloads received, readings decoded, dead letters.
        self.codec_received = Labelled(Counter(
            "mx_ingest_payloads_total", "Payloads received (messages, push bodies, frames)",
            ["transport", "codec"], registry=registry,
        ))
        self.codec_decoded = Labelled(Counter(
            "mx_ingest_decoded_total", "Readings decoded and handed to the pipeline",
            ["transport", "codec"], registry=registry,
        ))
        self.codec_dead_letters = Labelled(Counter(
            "mx_ingest_codec_dead_letters_total", "Dead letters (decode errors and rejected readings)",
            ["transport", "codec"], registry=registry,
        ))
        self.duplicates = Labelled(Counter(
            "mx_ingest_duplicates_total", "Readings dropped as duplicates (in memory or by the database)",
            ["transport"], registry=registry,
        ))
        # reason (a small fixed set; the stored dead letter says more): `undecodable` (no codec could
        # read it), `unknown_device` (MIAOXIANG_UNKNOWN_DEVICES=reject), `kind_mismatch` (not the registered kind),
        # `quarantine_rate` / `quarantine_cap` (an unknown device over the auto-registration bounds,
        # ingest.registration), `too_large` (an MQTT message over its size limit), `bad_topic` (an MQTT topic
        # not of the contract's shape)
        self.dead_letters = Labelled(Counter(
            "mx_ingest_dead_letters_total", "Inputs kept as dead letters", ["transport", "reason"], registry=registry
        ))
        self.quarantined = Counter(
            "mx_ingest_quarantined_devices_total", "Unknown devices auto-registered as quarantined", registry=registry,
        )
        self.processed = Labelled(Counter(
            "mx_ingest_processed_total", "Readings applied to fleet state and alerting", ["lane"], registry=registry,
        ))
        self.written = Counter("mx_ingest_written_total", "Readings committed to PostgreSQL", registry=registry)
        self.write_errors = Counter(
            "mx_ingest_write_errors_total", "Failed PostgreSQL flushes (retried)", registry=registry,
        )
        self.buffer_full = Counter(
            "mx_ingest_buffer_full_total", "Times the write buffer bound was reached", registry=registry,
        )
        self.queue_depth = Labelled(Gauge(
            "mx_ingest_queue_depth", "Submissions waiting per lane", ["lane"], registry=registry,
        ))
        self.buffered = Gauge(
            "mx_ingest_write_buffer", "Readings and dead letters waiting to be written", registry=registry,
        )
        self.buffer_limit = Gauge(
            "mx_ingest_write_buffer_limit",
            "Bound of the write buffer: telemetry waits beyond it (events have a reserve)",
            registry=registry,
        )
        self.batch_size = Labelled(Histogram(
            "mx_ingest_batch_size", "Readings per processed batch", ["lane"],
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000), registry=registry,
        ))
        self.write_seconds = Histogram(
            "mx_ingest_write_seconds", "Duration of one PostgreSQL flush",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
        )
