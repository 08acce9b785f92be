"""Tencent Cloud SMS: `SendSms` (API version 2021-01-11) over its signed HTTP API (JSON POST).

Signature v3, TC3-HMAC-SHA256 (cloud.tencent.com/document/api/382/52072 "签名方法 v3"):
CanonicalRequest = "POST\\n/\\n\\n" + canonical headers (`content-type`, `host`, `x-tc-action`,
lower-case names, trimmed values, the action lower-cased, each line ending in "\\n") + "\\n" +
"content-type;host;x-tc-action" + "\\n" + hex SHA-256 of the body; StringToSign =
"TC3-HMAC-SHA256\\n" + timestamp + "\\n" + "<UTC date>/sms/tc3_request" + "\\n" + hex SHA-256 of
the CanonicalRequest; the key is HMAC-SHA256 chained over the date, "sms" and "tc3_request"
starting from "TC3" + SecretKey; `Authorization` = "TC3-HMAC-SHA256 Credential=<SecretId>/<scope>,
SignedHeaders=..., Signature=<hex>", with headers `X-TC-Action`, `X-TC-Version`,
`X-TC-Timestamp`, `X-TC-Region`.

The answer is `{"Response": {...}}`: an `Error` `{Code, Message}` when the call failed (e.g.
`AuthFailure.SignatureFailure`), else `SendStatusSet[]` whose `Code` is `Ok` for a number sent
(cloud.tencent.com/document/api/382/55981 SendSms; error codes 382/52075):
`LimitExceeded.*` (PhoneNumberDailyLimit, PhoneNumberThirtySecondLimit, DeliveryFrequencyLimit,
...) and `RequestLimitExceeded*` (API call rate) are worth a retry later; others
(`FailedOperation.TemplateIncorrectOrUnapproved`, ...) are not. Template variables are the list
`[type, unit, time, token]`, numbers E.164.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from alerting.response.channels.aliyun_sms import SMS_VARIABLES
from alerting.response.channels.base import OK, Message, Recipient, SendResult
from alerting.response.http import NO_ADDRESS, PROVIDER, Answer, Outbound, http_failure, provider_failure

ENDPOINT = "https://sms.tencentcloudapi.com/"
SERVICE = "sms"
ACTION = "SendSms"
VERSION = "2021-01-11"
SIGNED_HEADERS = "content-type;host;x-tc-action"
CONTENT_TYPE = "application/json; charset=utf-8"


class TencentSmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_id: str
    secret_key: str
    sdk_app_id: str
    sign_name: str
    template_id: str
    region: str = "ap-guangzhou"


def retryable(code: str) -> bool:
    return code.startswith(("LimitExceeded", "RequestLimitExceeded"))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def authorization(secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    headers = f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-tc-action:{ACTION.lower()}\n"
    request = f"POST\n/\n\n{headers}\n{SIGNED_HEADERS}\n{hashlib.sha256(body).hexdigest()}"
    scope = f"{date}/{SERVICE}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    mac = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={mac}"


def host_of(url: str) -> str:
    """The Host header httpx sends for `url` (the port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


@dataclass(slots=True)
class TencentSms:
    type: str = field(default="tencent_sms", init=False)
    group: bool = field(default=False, init=False)

    config: TencentSmsConfig
    endpoint: str | None
    out: Outbound
    clock: Callable[[], float] = field(default=time.time)

    def payload(self, phone: str, sms: Mapping[str, str]) -> dict[str, Any]:
        c = self.config
        return {"PhoneNumberSet": [phone], "SmsSdkAppId": c.sdk_app_id, "SignName": c.sign_name,
                "TemplateId": c.template_id, "TemplateParamSet": [sms.get(k, "") for k in SMS_VARIABLES]}

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        if not recipient.phone:
            return SendResult(False, NO_ADDRESS)
        c = self.config
        url = self.endpoint or ENDPOINT
        body = json.dumps(self.payload(recipient.phone, message.sms), ensure_ascii=False).encode()
        timestamp = int(self.clock())
        host = host_of(url)
        headers = {"Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": ACTION, "X-TC-Version": VERSION,
                   "X-TC-Timestamp": str(timestamp), "X-TC-Region": c.region,
                   "Authorization": authorization(c.secret_id, c.secret_key, host, body, timestamp)}
        return result(await self.out.call("POST", url, content=body, headers=headers))


def result(answer: Answer | SendResult) -> SendResult:
    if isinstance(answer, SendResult):
        return answer
    response = answer.body.get("Response") if isinstance(answer.body, dict) else None
    if not isinstance(response, dict):
        return http_failure(answer.status) if not 200 <= answer.status < 300 else SendResult(False, PROVIDER)
    error = response.get("Error")
    statuses = response.get("SendStatusSet") or [{}]
    code = str(error.get("Code")) if isinstance(error, dict) else str(statuses[0].get("Code"))
    if code == "Ok" and 200 <= answer.status < 300:
        return OK
    return provider_failure(answer.status, code, {code} if retryable(code) else ())
