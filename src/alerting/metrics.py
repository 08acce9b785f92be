"""Prometheus metrics of alarms, escalation and streams; one set per app, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlarmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.raised = Counter("mx_alarms_raised_total", "New alarms", ["type", "response"], registry=registry)
        self.folded = Counter(
            "mx_alarms_folded_total", "Repeats folded into an open alarm", ["type"], registry=registry
        )
        self.changes = Counter(
            "mx_alarm_changes_total", "Alarm changes written, by action", ["action"], registry=registry
        )
        self.ignored = Counter(
            "mx_alarm_ignored_decisions_total", "Decisions that changed nothing: clears of nothing, late reports "
            "with no alarm to record them on", ["action"], registry=registry,
        )
        self.late = Counter(
            "mx_alarm_late_reports_total", "Reports judged late (audited as `late_report` on their alarm), by alarm "
            "type and decision (raise, clear)", ["type", "decision"], registry=registry,
        )
        self.db_errors = Counter(
            "mx_alarm_db_errors_total", "Failed alarm writes (connection errors are retried)", registry=registry
        )
        self.ack_seconds = Histogram(
            "mx_alarm_ack_seconds", "From raising an alarm to its acknowledgement",
            buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400), registry=registry,
        )
        self.stream_latency = Histogram(
            "mx_alarm_stream_latency_seconds", "From receipt of the reading to the alarm change on the stream hub",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
        )
        self.escalations = Counter(
            "mx_alarm_escalations_total", "Escalation levels reached", ["level"], registry=registry
        )
        self.subscribers = Gauge(
            "mx_alarm_stream_subscribers", "Live SSE and WebSocket subscribers", registry=registry
        )
        self.cut_off = Counter(
            "mx_alarm_stream_cut_off_total", "Subscribers cut off for not keeping up", registry=registry
        )
        self.notify_attempts = Counter(
            "mx_alarm_notification_attempts_total", "Notification sends attempted, every channel type", ["ok"],
            registry=registry,
        )
        self.notify_pending = Gauge(
            "mx_alarm_notification_outbox_pending", "Notifications queued: waiting to be sent, for a digest or a retry",
            registry=registry,
        )
        self.notify_failed = Counter(
            "mx_alarm_notifications_failed_total", "Notifications given up after their last attempt", registry=registry
        )
        self.notify_sends = Counter(
            "mx_notification_sends_total", "Attempts to send a notification message, by channel type and outcome",
            ["channel_type", "ok"], registry=registry,
        )
