"""企业微信 (WeCom) group robot: a text message POSTed to the robot's webhook URL.

The URL's `key` query parameter is the robot's secret. The answer is `{"errcode": 0, "errmsg":
"ok"}` on success; a text message holds at most 2048 bytes and a robot at most 20 messages a
minute (developer.work.weixin.qq.com/document/path/91770 "消息发送频率限制"). Beyond that WeCom
answers `errcode` 45009 "api freq out of limit" (the same code as its other APIs' frequency
limit, as WeCom's developer community threads show): worth a retry later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from alerting.response.channels.base import Message, Recipient, SendResult
from alerting.response.http import Outbound, clip, code_result, rebase

#: errcodes of WeCom's frequency limit
RATE_LIMITED = frozenset({"45009"})
MAX_TEXT_BYTES = 2048


class WecomConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str


@dataclass(slots=True)
class WecomRobot:
    type: str = field(default="wecom_robot", init=False)
    group: bool = field(default=True, init=False)

    config: WecomConfig
    endpoint: str | None
    out: Outbound

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        body = {"msgtype": "text", "text": {"content": clip(message.text, MAX_TEXT_BYTES)}}
        return code_result(await self.out.post_json(rebase(self.config.url, self.endpoint), body),
                           "errcode", RATE_LIMITED)
