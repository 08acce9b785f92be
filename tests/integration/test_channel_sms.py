"""Aliyun and Tencent SendSms against local endpoints that recompute the signature as each
provider documents it and answer with the provider's success and error bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from alerting.response.channels.base import Recipient, SendResult
from alerting.response.channels.registry import build_channel
from alerting.response.http import NO_ADDRESS, Outbound
from devices.outbound import NOT_ALLOWED, OutboundPolicy
from tests.integration.test_channel_robots import LOCAL, MESSAGE
from tests.providers import aliyun, tencent
from tests.providers.server import ProviderServer

PERSON = Recipient("张三", phone="+8613800138000", email="zhang@example.com")
ALIYUN = {"access_key_id": "LTAI5tExample", "access_key_secret": "aK+/s3cr=t 秘", "sign_name": "秒响 消防*",
          "template_code": "SMS_154950909", "region": "cn-hangzhou"}
TENCENT = {"secret_id": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3Example", "secret_key": "Gu5t9xGARNpq86cd98joQYCN3Example",
           "sdk_app_id": "1400006666", "sign_name": "秒响科技", "template_id": "1110", "region": "ap-guangzhou"}


@pytest.fixture
async def out() -> AsyncIterator[Outbound]:
    async with Outbound(LOCAL, timeout_s=1.0) as o:
        yield o


def aliyun_provider(mode: str = "ok") -> aliyun.AliyunSms:
    return aliyun.AliyunSms(ALIYUN["access_key_id"], ALIYUN["access_key_secret"], ALIYUN["sign_name"],
                            ALIYUN["template_code"], mode)


def tencent_provider(mode: str = "ok") -> tencent.TencentSms:
    return tencent.TencentSms(TENCENT["secret_id"], TENCENT["secret_key"], TENCENT["sdk_app_id"],
                              TENCENT["sign_name"], TENCENT["template_id"], mode)


@contextmanager
def serving(provider: Any) -> Iterator[ProviderServer]:
    with ProviderServer(provider.handle).running() as server:
        yield server


async def test_aliyun_send_accepted_with_the_template_variables_in_order(out: Outbound) -> None:
    provider = aliyun_provider()
    with serving(provider) as server:
        channel = build_channel("aliyun_sms", ALIYUN, f"{server.url}/", out)
        assert not channel.group
        assert await channel.send(MESSAGE, PERSON) == SendResult(True)
        assert await channel.send(MESSAGE, PERSON) == SendResult(True)  # a fresh nonce each time
    params = provider.sent[0]
    assert params["PhoneNumbers"] == "8613800138000"
    assert list(json.loads(params["TemplateParam"]).items()) == [
        ("type", "火警"), ("unit", "测试单位"), ("time", "10:42"), ("token", "tok123")]


@pytest.mark.parametrize(("mode", "config", "code", "status_retry"), [
    ("ok", {"access_key_secret": "wrong"}, "SignatureDoesNotMatch", False),
    ("ok", {"template_code": "SMS_000000"}, "isv.SMS_TEMPLATE_ILLEGAL", False),
    ("quota", {}, "isv.BUSINESS_LIMIT_CONTROL", True),
    ("throttle", {}, "Throttling.User", True),
    ("5xx", {}, "InternalError", True),
])
async def test_aliyun_refusals(mode: str, config: dict[str, str], code: str, status_retry: bool, out: Outbound) -> None:
    with serving(aliyun_provider(mode)) as server:
        result = await build_channel("aliyun_sms", {**ALIYUN, **config}, server.url, out).send(MESSAGE, PERSON)
    assert result == SendResult(False, "provider", code, retry=status_retry)


async def test_tencent_send_accepted_with_the_template_variables_in_order(out: Outbound) -> None:
    provider = tencent_provider()
    with serving(provider) as server:
        channel = build_channel("tencent_sms", TENCENT, server.url, out)
        assert await channel.send(MESSAGE, PERSON) == SendResult(True)
    body = provider.sent[0]
    assert body["PhoneNumberSet"] == ["+8613800138000"]
    assert body["TemplateParamSet"] == ["火警", "测试单位", "10:42", "tok123"]


@pytest.mark.parametrize(("mode", "config", "code", "retry"), [
    ("ok", {"secret_key": "wrong"}, "AuthFailure.SignatureFailure", False),
    ("ok", {"template_id": "9999"}, "FailedOperation.TemplateIncorrectOrUnapproved", False),
    ("quota", {}, "LimitExceeded.PhoneNumberDailyLimit", True),
    ("throttle", {}, "RequestLimitExceeded", True),
])
async def test_tencent_refusals(mode: str, config: dict[str, str], code: str, retry: bool, out: Outbound) -> None:
    with serving(tencent_provider(mode)) as server:
        result = await build_channel("tencent_sms", {**TENCENT, **config}, server.url, out).send(MESSAGE, PERSON)
    assert result == SendResult(False, "provider", code, retry=retry)


@pytest.mark.parametrize(("type_", "config", "provider"), [
    ("aliyun_sms", ALIYUN, aliyun_provider), ("tencent_sms", TENCENT, tencent_provider)])
async def test_sms_gateway_errors_and_timeouts_are_retried(
    type_: str, config: dict[str, str], provider: Any, out: Outbound,
) -> None:
    with serving(provider("5xx")) as server:
        failed = await build_channel(type_, config, server.url, out).send(MESSAGE, PERSON)
    assert failed.retry and not failed.ok
    with ProviderServer(lambda req: tencent.Reply(200, {}, delay_s=2.0)).running() as server:
        slow = await build_channel(type_, config, server.url, out).send(MESSAGE, PERSON)
    assert slow == SendResult(False, "timeout", retry=True)


@pytest.mark.parametrize(("type_", "config"), [("aliyun_sms", ALIYUN), ("tencent_sms", TENCENT)])
async def test_sms_outside_the_policy_or_without_a_phone(type_: str, config: dict[str, str]) -> None:
    with serving(aliyun_provider() if type_ == "aliyun_sms" else tencent_provider()) as server:
        async with Outbound(OutboundPolicy(), timeout_s=1.0) as strict:
            refused = await build_channel(type_, config, server.url, strict).send(MESSAGE, PERSON)
            metadata = await build_channel(type_, config, "http://100.100.100.200/", strict).send(MESSAGE, PERSON)
            no_phone = await build_channel(type_, config, server.url, strict).send(MESSAGE, Recipient("李四"))
        assert server.requests == []
    assert refused == metadata == SendResult(False, NOT_ALLOWED)
    assert no_phone == SendResult(False, NO_ADDRESS)
