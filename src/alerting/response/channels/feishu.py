"""飞书 (Feishu / Lark) custom robot: a text message POSTed to the robot's webhook URL.

With a `secret` ("签名校验") the JSON body carries `timestamp` (seconds, a string) and `sign` =
Base64(HMAC-SHA256(key = timestamp + "\\n" + secret, message = empty)); Feishu refuses a
timestamp more than an hour from its clock (`code` 19021 "sign match fail or timestamp is not
within one hour from current time"), and a message without the robot's keyword (19024). Success
is `code` 0. A custom robot may send 100 messages a minute and 5 a second per tenant; beyond that
Feishu answers `code` 11232 ("自定义机器人使用指南": "可能出现因系统压力导致的 11232 限流错误"), and
its gateway answers 99991400 "request trigger frequency limit" with HTTP 429 (or 400 on older
APIs; "频控策略"): both worth a retry later. (9499 is Feishu's "Bad Request", not a limit.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from alerting.response.channels.base import Message, Recipient, SendResult
from alerting.response.channels.dingtalk import with_keyword
from alerting.response.http import Outbound, code_result, rebase

#: codes of Feishu's robot and gateway frequency limits
RATE_LIMITED = frozenset({"11232", "99991400"})


class FeishuConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str | None = None
    keyword: str | None = None


def sign(secret: str, timestamp_s: str) -> str:
    """Base64 of HMAC-SHA256 keyed by timestamp + "\\n" + secret over an empty message."""
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


@dataclass(slots=True)
class FeishuRobot:
    type: str = field(default="feishu_robot", init=False)
    group: bool = field(default=True, init=False)

    config: FeishuConfig
    endpoint: str | None
    out: Outbound
    clock: Callable[[], float] = field(default=time.time)

    def body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": with_keyword(text, self.config.keyword)}}
        if self.config.secret:
            timestamp = str(int(self.clock()))
            body = {"timestamp": timestamp, "sign": sign(self.config.secret, timestamp), **body}
        return body

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        answer = await self.out.post_json(rebase(self.config.url, self.endpoint), self.body(message.text))
        return code_result(answer, "code", RATE_LIMITED)
