"""A signed JSON webhook (CONTRACT §9 `webhook`): v1's body (`notification_id`, `level`,
`level_name`, `contact`, `alarm`) plus the message's `text` (a digest's one line per alarm, each
with its own link) and `link` (the first alarm's responder link, null without
MIAOXIANG_PUBLIC_URL), with headers `X-Miaoxiang-Timestamp` (ms) and
`X-Miaoxiang-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`. Receivers
reject a timestamp older than 5 minutes and dedupe on `notification_id`. A work-order notice
(CONTRACT §11) has its own body, without `notification_id`: `work_order_notice_id`, `notice`
(`assigned` or `overdue`), `contact`, `work_order` and `text`. Sent on any 2xx; a 5xx, 408, 425
or 429 is worth a retry, another answer is not."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from alerting.lifecycle import LEVEL_NAMES
from alerting.response.channels.base import OK, Message, Recipient, SendResult
from alerting.response.http import Outbound, http_failure, rebase

TIMESTAMP = "X-Miaoxiang-Timestamp"
SIGNATURE = "X-Miaoxiang-Signature"


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str


def signature(secret: str, timestamp_ms: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp_ms.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def _payload(message: Message, recipient: Recipient) -> dict[str, Any]:
    """The body: an alarm message's (v1 fields, `text`, `link`) or a work-order notice's."""
    if message.work_order is not None:
        return {"work_order_notice_id": str(message.work_order_notice_id), "notice": message.notice,
                "contact": recipient.name, "work_order": dict(message.work_order), "text": message.text}
    level_name = LEVEL_NAMES[message.level] if 0 <= message.level < len(LEVEL_NAMES) else str(message.level)
    return {"notification_id": str(message.notification_id), "level": message.level, "level_name": level_name,
            "contact": recipient.name, "alarm": dict(message.alarm), "text": message.text, "link": message.link}


@dataclass(slots=True)
class Webhook:
    type: str = field(default="webhook", init=False)
    group: bool = field(default=False, init=False)

    config: WebhookConfig
    endpoint: str | None
    out: Outbound
    clock: Callable[[], float] = field(default=time.time)

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        body = json.dumps(_payload(message, recipient), ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()
        timestamp = str(int(self.clock() * 1000))
        headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP: timestamp,
                   SIGNATURE: signature(self.config.secret, timestamp, body)}
        answer = await self.out.call("POST", rebase(self.config.url, self.endpoint), content=body, headers=headers)
        if isinstance(answer, SendResult):
            return answer
        return OK if 200 <= answer.status < 300 else http_failure(answer.status)
