"""v1 notification attempts (`notification_attempts`) as the API shows them.

The v1 outbox notifier is gone: notifications are `alerting.response` now (`notifications`,
`notification_sends`, docs/escalation.md). Attempts recorded by v1 keep their rows; the alarm
detail shows each by its class (`ERROR_CLASSES`), never a socket's error text.
"""

from __future__ import annotations

from alerting.response.http import ERROR_CLASSES, status_class

__all__ = ["ERROR_CLASSES", "shown_detail"]


def shown_detail(ok: bool, detail: str) -> str:
    """An attempt's recorded `detail` as the API shows it: its class. Attempts recorded before
    classes were (`<contact>: HTTP 503`, `<contact>: ConnectError: ...`) show the class their
    text implies, never the text."""
    if detail in ERROR_CLASSES or ok:
        return detail if detail in ERROR_CLASSES else "http 2xx"
    code = detail.rpartition("HTTP ")[2]
    if code.isdigit():
        return status_class(int(code))
    return "timeout" if "Timeout" in detail else "refused"
