"""Tencent Cloud SMS `SendSms` (2021-01-11) as documented: TC3-HMAC-SHA256 recomputed from the
request as received, then the SMS parameters, answering `{"Response": {...}}` as Tencent does
(HTTP 200 throughout; `Error` for a failed call, `SendStatusSet` per number otherwise).

Signature v3: CanonicalRequest = method \\n "/" \\n query \\n canonical headers (the signed
headers, names lower case, values trimmed and lower case as in the documented example, each
followed by \\n) \\n SignedHeaders \\n hex(SHA-256(body)); StringToSign = "TC3-HMAC-SHA256" \\n
X-TC-Timestamp \\n "<date>/sms/tc3_request" \\n hex(SHA-256(CanonicalRequest)), date the UTC date
of the timestamp; key = HMAC chain of date, "sms", "tc3_request" from "TC3" + SecretKey;
Signature = hex(HMAC-SHA256(key, StringToSign)). `content-type` and `host` must be signed; a
timestamp more than 5 minutes off is `AuthFailure.SignatureExpire`.

`mode`: "ok"; "quota" answers the number's `LimitExceeded.PhoneNumberDailyLimit`; "throttle" an
`Error` `RequestLimitExceeded`; "5xx" a 502 from the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.providers.server import Reply, Request

_AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/sms/tc3_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})")
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _error(code: str, message: str) -> Reply:
    return Reply(200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}})


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(secret_key: str, req: Request, signed_headers: str, date: str, timestamp: str) -> str:
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{n}:{req.headers.get(n, '').strip().lower()}\n" for n in names)
    canonical_request = "\n".join([req.method, "/", req.raw_query, canonical_headers, signed_headers,
                                   hashlib.sha256(req.body).hexdigest()])
    string_to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, f"{date}/sms/tc3_request",
                                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    secret_signing = _sign(_sign(_sign(("TC3" + secret_key).encode("utf-8"), date), "sms"), "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class TencentSms:
    secret_id: str
    secret_key: str
    sdk_app_id: str
    sign_name: str
    template_id: str
    mode: str = "ok"
    sent: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, req: Request) -> Reply:
        if self.mode == "5xx":
            return Reply(502, b"<html>502 Bad Gateway</html>")
        h = req.headers
        if h.get("x-tc-action") != "SendSms" or h.get("x-tc-version") != "2021-01-11" or not h.get("x-tc-region"):
            return _error("InvalidAction", "The action, version or region is missing or wrong.")
        match = _AUTH.fullmatch(h.get("authorization", ""))
        timestamp = h.get("x-tc-timestamp", "")
        if match is None or not timestamp.isdigit():
            return _error("AuthFailure.InvalidAuthorization", "Authorization in the request header is invalid.")
        secret_id, date, signed_headers, signature = match.groups()
        if secret_id != self.secret_id:
            return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        if abs(time.time() - int(timestamp)) > 300:
            return _error("AuthFailure.SignatureExpire", "Signature expired.")
        if date != datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d") \
                or not {"content-type", "host"} <= set(signed_headers.split(";")):
            return _error("AuthFailure.InvalidAuthorization", "Authorization in the request header is invalid.")
        if signature != expected_signature(self.secret_key, req, signed_headers, date, timestamp):
            return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        if self.mode == "throttle":
            return _error("RequestLimitExceeded", "Your current request times equals to `20` in a second.")
        body = req.json()
        if body.get("SmsSdkAppId") != self.sdk_app_id:
            return _error("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
        if body.get("SignName") != self.sign_name:
            return _error("FailedOperation.SignatureIncorrectOrUnapproved", "The signature is not approved.")
        if body.get("TemplateId") != self.template_id:
            return _error("FailedOperation.TemplateIncorrectOrUnapproved", "The template is not approved.")
        params = body.get("TemplateParamSet")
        if not isinstance(params, list) or len(params) != 4 or not all(isinstance(p, str) for p in params):
            return _error("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                          "The template parameters do not match the approved template.")
        statuses = []
        for phone in body.get("PhoneNumberSet", []):
            if not _E164.fullmatch(phone):
                code, message = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"
            elif self.mode == "quota":
                code, message = ("LimitExceeded.PhoneNumberDailyLimit", "the number of sms messages sent from a "
                                 "single mobile number every day exceeds the upper limit")
            else:
                code, message = "Ok", "send success"
                self.sent.append(body)
            statuses.append({"SerialNo": uuid.uuid4().hex, "PhoneNumber": phone, "Fee": 1, "SessionContext": "",
                             "Code": code, "Message": message, "IsoCode": "CN"})
        return Reply(200, {"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}})
