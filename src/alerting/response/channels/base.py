"""What every channel adapter is: `send(message, recipient) -> SendResult` (CONTRACT §9).

Adapters are small and stateless apart from their configuration; they build the provider's
request exactly as the provider documents it (signatures included), send it through the
outbound-checked HTTP client they are given, and read the provider's own result: a send is
`ok` only when the provider says so. They never retry: the notifier decides from `retry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient: a single alarm, or a digest of several.

    `text` is the full message (Chinese by default) for robots, e-mail and webhooks; `title` its
    first line (e-mail subject). `sms` holds the template variables in the contract's order:
    `type`, `unit` (at most 20 characters), `time` (`HH:MM`), `token` (the link's last segment,
    empty without a link). `alarm` is the alarm object (webhook body), `alarm_ids` every alarm it
    carries (a digest has several; the first is the one SMS names). A work-order notice (CONTRACT
    §11) carries no alarm: `work_order` holds the order object, `work_order_notice_id` the notice
    and `notice` why it is sent (`assigned`, `overdue`); a webhook sends them in their own shape.
    """

    title: str
    text: str
    sms: Mapping[str, str]
    alarm_ids: tuple[int, ...]
    link: str | None = None
    level: int = 0
    alarm: Mapping[str, Any] = field(default_factory=dict)
    notification_id: int = 0
    work_order: Mapping[str, Any] | None = None
    work_order_notice_id: int = 0
    notice: str = ""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Whom a personal channel addresses (a group robot ignores it)."""

    name: str
    phone: str | None = None  # E.164
    email: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt. `error_class` is one of `ERROR_CLASSES` of the notifier, or
    `provider` when the provider refused (then `provider_code` holds its code, e.g. `isv.BUSINESS_LIMIT_CONTROL`,
    `LimitExceeded.PhoneNumberDailyLimit`, or a robot's `errcode`). `retry`: worth another attempt
    (5xx, timeouts, connection errors, the provider's rate-limit codes); never for other refusals."""

    ok: bool
    error_class: str | None = None
    provider_code: str | None = None
    retry: bool = False


OK = SendResult(True)


class Channel(Protocol):
    """A configured channel. `group` channels (robots) reach a group, not a person."""

    type: str
    group: bool

    async def send(self, message: Message, recipient: Recipient) -> SendResult: ...
