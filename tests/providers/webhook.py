"""A receiver of Miaoxiang's signed webhook (CONTRACT §9): `X-Miaoxiang-Timestamp` (ms) no older
than 5 minutes, `X-Miaoxiang-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`,
v1's body fields, `text` and `link`. Answers 204, 401 for a bad signature, 400 for a bad body; `mode` "5xx"
answers 503, "slow" after 2 s."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from tests.providers.server import Reply, Request

FIELDS = {"notification_id", "level", "level_name", "contact", "alarm", "text", "link"}


@dataclass
class Receiver:
    secret: str
    mode: str = "ok"

    def handle(self, req: Request) -> Reply:
        timestamp = req.headers.get("x-miaoxiang-timestamp", "")
        if not timestamp.isdigit() or time.time() * 1000 - int(timestamp) > 300_000:
            return Reply(401, {"error": "stale timestamp"})
        digest = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + req.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(req.headers.get("x-miaoxiang-signature", ""), f"sha256={digest}"):
            return Reply(401, {"error": "bad signature"})
        if self.mode == "5xx":
            return Reply(503, {"error": "busy"})
        if self.mode == "slow":
            return Reply(204, b"", delay_s=2.0)
        body = json.loads(req.body)
        if set(body) != FIELDS:
            return Reply(400, {"error": f"fields {sorted(body)}"})
        return Reply(204, b"")
