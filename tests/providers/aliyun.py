"""Alibaba Cloud dysmsapi `SendSms` (2017-05-25) as documented: RPC signature version 1.0 checked
from the request's own parameters, then the SMS parameters, answering with Alibaba Cloud's
bodies (`Code`, `Message`, `RequestId`, `BizId`).

Signature ("Signature mechanism", RPC): sort the parameters (all but `Signature`) by name;
percent-encode names and values as RFC 3986 over UTF-8 (unreserved `A-Za-z0-9-_.~` kept, the
rest `%XY` upper case); join `name=value` with `&`; StringToSign = METHOD & enc("/") &
enc(joined); Signature = Base64(HMAC-SHA1(secret + "&", StringToSign)). `Timestamp` is
`YYYY-MM-DDThh:mm:ssZ` UTC (refused beyond 15 minutes), `SignatureNonce` is single-use.

`mode`: "ok"; "quota" answers `isv.BUSINESS_LIMIT_CONTROL` (业务限流, in a 200 as Alibaba does);
"throttle" `Throttling.User` (HTTP 400); "5xx" an `InternalError` 500.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from tests.providers.server import Reply, Request

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
REQUIRED = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod", "SignatureNonce", "SignatureVersion",
            "Timestamp", "Version", "PhoneNumbers", "SignName", "TemplateCode", "Signature")


def percent_encode(text: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    joined = "&".join(percent_encode(k) + "=" + percent_encode(v) for k, v in pairs)
    string_to_sign = method + "&" + percent_encode("/") + "&" + percent_encode(joined)
    return base64.b64encode(hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def _answer(code: str, message: str, status: int = 200, **extra: str) -> Reply:
    return Reply(status, {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper(), **extra})


@dataclass
class AliyunSms:
    access_key_id: str
    access_key_secret: str
    sign_name: str
    template_code: str
    mode: str = "ok"
    nonces: set[str] = field(default_factory=set)
    sent: list[dict[str, str]] = field(default_factory=list)

    def handle(self, req: Request) -> Reply:
        raw = req.body.decode() if req.method == "POST" else req.raw_query
        params = dict(parse_qsl(raw, keep_blank_values=True))
        missing = [name for name in REQUIRED if name not in params]
        if missing:
            return _answer(f"MissingParameter.{missing[0]}", f"The input parameter {missing[0]} is not specified.", 400)
        if (params["Action"], params["Version"]) != ("SendSms", "2017-05-25"):
            return _answer("InvalidAction.NotFound", "Specified api is not found.", 404)
        if (params["SignatureMethod"], params["SignatureVersion"], params["Format"]) != ("HMAC-SHA1", "1.0", "JSON"):
            return _answer("InvalidParameter", "The signature method, version or format is not supported.", 400)
        if params["AccessKeyId"] != self.access_key_id:
            return _answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        try:
            stamp = calendar.timegm(time.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return _answer("InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.", 400)
        if abs(time.time() - stamp) > 900:
            return _answer("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)
        if params["Signature"] != expected_signature(self.access_key_secret, req.method, params):
            return _answer("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", 400)
        if params["SignatureNonce"] in self.nonces:
            return _answer("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        self.nonces.add(params["SignatureNonce"])
        if self.mode == "5xx":
            return _answer("InternalError", "The request processing has failed due to some unknown error.", 500)
        if self.mode == "throttle":
            return _answer("Throttling.User", "Request was denied due to user flow control.", 400)
        if params["SignName"] != self.sign_name:
            return _answer("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if params["TemplateCode"] != self.template_code:
            return _answer("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            variables = json.loads(params.get("TemplateParam", ""))
        except ValueError:
            return _answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(variables, dict) or list(variables) != ["type", "unit", "time", "token"] \
                or not all(isinstance(v, str) for v in variables.values()):
            return _answer("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
        if not params["PhoneNumbers"].isdigit():
            return _answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if self.mode == "quota":
            return _answer("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5")
        self.sent.append(params)
        return _answer("OK", "OK", BizId="900619746936498440^0")
