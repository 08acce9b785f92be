"""Alibaba Cloud SMS: `SendSms` of dysmsapi (API version 2017-05-25) over its signed RPC API.

Signature version 1.0 (Alibaba Cloud "Signature mechanism" of RPC APIs): every parameter,
common ones included (`AccessKeyId`, `Action`, `Format` JSON, `RegionId`, `SignatureMethod`
HMAC-SHA1, `SignatureNonce` unique per request, `SignatureVersion` 1.0, `Timestamp` ISO 8601
UTC, `Version`), sorted by name, each name and value percent-encoded (RFC 3986: only
`A-Z a-z 0-9 - _ . ~` left as they are, UTF-8 bytes as `%XY` upper case) and joined as
`name=value` with `&`; StringToSign = method + "&" + enc("/") + "&" + enc(that string);
`Signature` = Base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign)). Sent as a POST form.

The answer's `Code` is `OK` on success, else the refusal (help.aliyun.com/document_detail/101346
"API错误码"): `isv.BUSINESS_LIMIT_CONTROL` (业务限流: per-number frequency limits, 1/min, 5/h,
10/day for codes and 50/day per template for notices) and `Throttling.*` (API call rate) are
worth a retry later; `isv.SMS_TEMPLATE_ILLEGAL`, `SignatureDoesNotMatch`, `isv.DAY_LIMIT_CONTROL`
(the account's own daily cap) and the others are not. The template's variables are a JSON object
`{"type", "unit", "time", "token"}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from alerting.response.channels.base import OK, Message, Recipient, SendResult
from alerting.response.http import NO_ADDRESS, PROVIDER, Answer, Outbound, http_failure, provider_failure

ENDPOINT = "https://dysmsapi.aliyuncs.com/"
VERSION = "2017-05-25"
SMS_VARIABLES = ("type", "unit", "time", "token")


class AliyunSmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str
    access_key_secret: str
    sign_name: str
    template_code: str
    region: str = "cn-hangzhou"


def retryable(code: str) -> bool:
    return code == "isv.BUSINESS_LIMIT_CONTROL" or code.startswith("Throttling")


def encode(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 (`quote` leaves exactly `A-Za-z0-9-_.~`)."""
    return quote(text, safe="")


def canonical(params: Mapping[str, str]) -> str:
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))


def signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    to_sign = f"{method}&{encode('/')}&{encode(canonical(params))}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def template_param(sms: Mapping[str, str]) -> str:
    return json.dumps({k: sms.get(k, "") for k in SMS_VARIABLES}, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class AliyunSms:
    type: str = field(default="aliyun_sms", init=False)
    group: bool = field(default=False, init=False)

    config: AliyunSmsConfig
    endpoint: str | None
    out: Outbound
    clock: Callable[[], float] = field(default=time.time)

    def params(self, phone: str, sms: Mapping[str, str]) -> dict[str, str]:
        c = self.config
        params = {
            "AccessKeyId": c.access_key_id, "Action": "SendSms", "Format": "JSON", "RegionId": c.region,
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())), "Version": VERSION,
            # E.164 without its "+": Aliyun takes mainland numbers with or without 86, others as country code + number
            "PhoneNumbers": phone.removeprefix("+"), "SignName": c.sign_name, "TemplateCode": c.template_code,
            "TemplateParam": template_param(sms),
        }
        return {**params, "Signature": signature(c.access_key_secret, "POST", params)}

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        if not recipient.phone:
            return SendResult(False, NO_ADDRESS)
        form = canonical(self.params(recipient.phone, message.sms))
        answer = await self.out.call("POST", self.endpoint or ENDPOINT, content=form.encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        return result(answer)


def result(answer: Answer | SendResult) -> SendResult:
    if isinstance(answer, SendResult):
        return answer
    code = answer.body.get("Code") if isinstance(answer.body, dict) else None
    if not isinstance(code, str):
        return http_failure(answer.status) if not 200 <= answer.status < 300 else SendResult(False, PROVIDER)
    if code == "OK" and 200 <= answer.status < 300:
        return OK
    return provider_failure(answer.status, code, {code} if retryable(code) else ())
