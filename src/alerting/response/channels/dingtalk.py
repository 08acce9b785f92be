"""钉钉 (DingTalk) custom robot: a text message POSTed to the robot's webhook URL.

With a `secret` ("加签"), the URL carries `timestamp` (ms) and `sign` = URL-encode(Base64(
HMAC-SHA256(key = secret, message = timestamp + "\\n" + secret))); DingTalk refuses a timestamp
more than an hour from its clock. With a custom keyword, the keyword must be in the text: the
channel's `keyword` starts every message. DingTalk answers `{"errcode": 0, "errmsg": "ok"}` on
success and 310000 for a wrong signature, timestamp or missing keyword. A robot may send 20
messages a minute; beyond that DingTalk answers `errcode` 130101 "send too fast, exceed 20
times per minute" and blocks the robot for 10 minutes (open.dingtalk.com "自定义机器人接入",
调用频率限制): worth a retry later. (No evidence was found for a code 660026 on robots.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from alerting.response.channels.base import Message, Recipient, SendResult
from alerting.response.http import Outbound, code_result, rebase

#: errcodes of DingTalk's robot frequency limit
RATE_LIMITED = frozenset({"130101"})


class DingtalkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str | None = None
    keyword: str | None = None


def sign(secret: str, timestamp_ms: int) -> str:
    """Base64 of HMAC-SHA256(key = secret, message = timestamp + "\\n" + secret) (URL-encoded by the query)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def with_keyword(text: str, keyword: str | None) -> str:
    return f"{keyword} {text}" if keyword else text


@dataclass(slots=True)
class DingtalkRobot:
    type: str = field(default="dingtalk_robot", init=False)
    group: bool = field(default=True, init=False)

    config: DingtalkConfig
    endpoint: str | None
    out: Outbound
    clock: Callable[[], float] = field(default=time.time)

    def url(self) -> str:
        url = rebase(self.config.url, self.endpoint)
        if not self.config.secret:
            return url
        timestamp = int(self.clock() * 1000)
        query = urlencode({"timestamp": timestamp, "sign": sign(self.config.secret, timestamp)})
        return f"{url}{'&' if '?' in url else '?'}{query}"

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        body = {"msgtype": "text", "text": {"content": with_keyword(message.text, self.config.keyword)}}
        return code_result(await self.out.post_json(self.url(), body), "errcode", RATE_LIMITED)
