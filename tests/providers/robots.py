"""WeCom, DingTalk and Feishu group robots as their documentation describes them.

- WeCom (developer.work.weixin.qq.com/document/path/91770): POST JSON to
  `/cgi-bin/webhook/send?key=KEY`, `{"msgtype": "text", "text": {"content"}}` (at most 2048
  bytes); `errcode` 0 on success, 93000 for an unknown key, 45009 beyond 20 messages a minute.
- DingTalk ("自定义机器人接入"): POST JSON to `/robot/send?access_token=T[&timestamp=&sign=]`; with
  加签, `timestamp` (ms, within an hour) and `sign` = urlEncode(Base64(HmacSHA256(secret,
  timestamp + "\\n" + secret))); a keyword must appear in the text; 310000 for a bad signature or
  a missing keyword, 130101 beyond 20 messages a minute.
- Feishu ("自定义机器人使用指南"): POST JSON to `/open-apis/bot/v2/hook/TOKEN`; with 签名校验,
  body `timestamp` (s, within an hour) and `sign` = Base64(HmacSHA256(key = timestamp + "\\n" +
  secret, message = "")); 19021 for a bad signature, 19024 for a missing keyword, 11232 when
  rate limited.

`mode`: "ok" answers as the provider does, "limit" with its rate-limit answer, "5xx" with a 502,
"slow" after 2 s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from tests.providers.server import Reply, Request

HOUR_MS = 3_600_000


def _hmac_sha256_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def _special(mode: str, limited: Reply) -> Reply | None:
    if mode == "limit":
        return limited
    if mode == "5xx":
        return Reply(502, b"<html>502 Bad Gateway</html>")
    if mode == "slow":
        return Reply(200, {"errcode": 0, "code": 0}, delay_s=2.0)
    return None


@dataclass
class Wecom:
    key: str
    mode: str = "ok"

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != "/cgi-bin/webhook/send" or req.query.get("key") != [self.key]:
            return Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1]"})
        special = _special(self.mode, Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
        if special:
            return special
        body = req.json()
        content = body.get("text", {}).get("content") if body.get("msgtype") == "text" else None
        if not isinstance(content, str) or not content:
            return Reply(200, {"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode()) > 2048:
            return Reply(200, {"errcode": 40058, "errmsg": "content exceed max length 2048"})
        return Reply(200, {"errcode": 0, "errmsg": "ok"})


@dataclass
class Dingtalk:
    access_token: str
    secret: str | None
    keyword: str | None
    mode: str = "ok"

    def handle(self, req: Request) -> Reply:
        q = req.query
        if req.method != "POST" or req.path != "/robot/send" or q.get("access_token") != [self.access_token]:
            return Reply(200, {"errcode": 300001, "errmsg": "token is not exist"})
        if self.secret is not None:
            timestamp, sign = q.get("timestamp", [""])[0], q.get("sign", [""])[0]
            if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > HOUR_MS:
                return Reply(200, {"errcode": 310000, "errmsg": "invalid timestamp"})
            expected = _hmac_sha256_b64(self.secret.encode(), f"{timestamp}\n{self.secret}".encode())
            if not hmac.compare_digest(sign, expected):
                return Reply(200, {"errcode": 310000, "errmsg": "sign not match"})
        special = _special(self.mode, Reply(200, {"errcode": 130101,
                                                  "errmsg": "send too fast, exceed 20 times per minute"}))
        if special:
            return special
        body = req.json()
        content = body.get("text", {}).get("content", "") if body.get("msgtype") == "text" else ""
        if self.keyword and self.keyword not in content:
            return Reply(200, {"errcode": 310000, "errmsg": "keywords not in content"})
        return Reply(200, {"errcode": 0, "errmsg": "ok"})


@dataclass
class Feishu:
    token: str
    secret: str | None
    keyword: str | None
    mode: str = "ok"

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != f"/open-apis/bot/v2/hook/{self.token}":
            return Reply(200, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid",
                               "data": {}})
        body = req.json()
        if self.secret is not None:
            timestamp, sign = body.get("timestamp"), body.get("sign")
            if not isinstance(timestamp, str) or not timestamp.isdigit() \
                    or abs(time.time() - int(timestamp)) > 3600:
                return Reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour "
                                                         "from current time", "data": {}})
            expected = _hmac_sha256_b64(f"{timestamp}\n{self.secret}".encode(), b"")
            if not isinstance(sign, str) or not hmac.compare_digest(sign, expected):
                return Reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour "
                                                         "from current time", "data": {}})
        special = _special(self.mode, Reply(200, {"code": 11232, "msg": "frequency limited", "data": {}}))
        if special:
            return special
        text = body.get("content", {}).get("text", "") if body.get("msg_type") == "text" else ""
        if not text:
            return Reply(400, {"code": 9499, "msg": "Bad Request", "data": {}})
        if self.keyword and self.keyword not in text:
            return Reply(200, {"code": 19024, "msg": "Key Words Not Found", "data": {}})
        return Reply(200, {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
