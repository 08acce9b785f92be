"""Group robots and the signed webhook, each against a local server that checks the request as
the provider documents it (tests/providers) and answers as the provider does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from alerting.response.channels.base import Message, Recipient, SendResult
from alerting.response.channels.registry import build_channel
from alerting.response.http import Outbound
from devices.outbound import NOT_ALLOWED, OutboundPolicy
from tests.providers import robots, webhook
from tests.providers.server import ProviderServer

LOCAL = OutboundPolicy.parse(["127.0.0.1"])
MESSAGE = Message(
    title="火警：测试单位", text="【火警】测试单位 3号楼 2层 烟感报警 10:42 https://mx.example/r/tok123",
    sms={"type": "火警", "unit": "测试单位", "time": "10:42", "token": "tok123"}, alarm_ids=(7,),
    link="https://mx.example/r/tok123", level=1, alarm={"alarm_id": 7, "type": "fire"}, notification_id=42)
GROUP = Recipient("值班群")


@pytest.fixture
async def out() -> AsyncIterator[Outbound]:
    async with Outbound(LOCAL, timeout_s=1.0) as o:
        yield o


@dataclass(frozen=True)
class Robot:
    """A robot type: its provider stand-in, its configuration on a server, and its codes."""

    type: str
    provider: Callable[[], Any]
    config: Callable[[str], dict[str, Any]]
    wrong_secret: Callable[[dict[str, Any]], dict[str, Any]]
    refused_code: str
    limit_code: str


ROBOTS = [
    Robot("wecom_robot", lambda: robots.Wecom("k-693a91f6"),
          lambda base: {"url": f"{base}/cgi-bin/webhook/send?key=k-693a91f6"},
          lambda c: {"url": c["url"].replace("k-693a91f6", "k-wrong")}, "93000", "45009"),
    Robot("dingtalk_robot", lambda: robots.Dingtalk("tok-566cc69d", "SECd3a1+/=秘", "告警"),
          lambda base: {"url": f"{base}/robot/send?access_token=tok-566cc69d", "secret": "SECd3a1+/=秘",
                        "keyword": "告警"},
          lambda c: {**c, "secret": "SECwrong"}, "310000", "130101"),
    Robot("feishu_robot", lambda: robots.Feishu("2b47-hook", "fs-secret", "告警"),
          lambda base: {"url": f"{base}/open-apis/bot/v2/hook/2b47-hook", "secret": "fs-secret", "keyword": "告警"},
          lambda c: {**c, "secret": "fs-wrong"}, "19021", "11232"),
]


@contextmanager
def serving(provider: Any) -> Iterator[ProviderServer]:
    with ProviderServer(provider.handle).running() as server:
        yield server


def sent_text(server: ProviderServer) -> str:
    body = server.requests[-1].json()
    return body["text"]["content"] if "text" in body else body["content"]["text"]


@pytest.mark.parametrize("robot", ROBOTS, ids=lambda r: r.type)
async def test_robot_request_accepted_with_the_keyword_first(robot: Robot, out: Outbound) -> None:
    provider = robot.provider()
    with serving(provider) as server:
        channel = build_channel(robot.type, robot.config(server.url), None, out)
        assert channel.group and channel.type == robot.type
        assert await channel.send(MESSAGE, GROUP) == SendResult(True)
        text = sent_text(server)
    assert text.endswith(MESSAGE.text)
    if robot.type != "wecom_robot":
        assert text.startswith("告警 ")


@pytest.mark.parametrize("robot", ROBOTS, ids=lambda r: r.type)
async def test_robot_refusing_the_secret_fails_with_its_code_not_retried(robot: Robot, out: Outbound) -> None:
    with serving(robot.provider()) as server:
        channel = build_channel(robot.type, robot.wrong_secret(robot.config(server.url)), None, out)
        result = await channel.send(MESSAGE, GROUP)
    assert result == SendResult(False, "provider", robot.refused_code, retry=False)


@pytest.mark.parametrize("robot", ROBOTS, ids=lambda r: r.type)
async def test_robot_rate_limit_is_retried_with_its_code(robot: Robot, out: Outbound) -> None:
    provider = robot.provider()
    provider.mode = "limit"
    with serving(provider) as server:
        result = await build_channel(robot.type, robot.config(server.url), None, out).send(MESSAGE, GROUP)
    assert result == SendResult(False, "provider", robot.limit_code, retry=True)


@pytest.mark.parametrize("robot", ROBOTS, ids=lambda r: r.type)
@pytest.mark.parametrize(("mode", "error"), [("5xx", "http 5xx"), ("slow", "timeout")])
async def test_robot_5xx_and_timeout_are_retried(robot: Robot, mode: str, error: str, out: Outbound) -> None:
    provider = robot.provider()
    provider.mode = mode
    with serving(provider) as server:
        result = await build_channel(robot.type, robot.config(server.url), None, out).send(MESSAGE, GROUP)
    assert result == SendResult(False, error, retry=True)


@pytest.mark.parametrize("robot", ROBOTS, ids=lambda r: r.type)
async def test_robot_outside_the_policy_fails_without_a_request(robot: Robot) -> None:
    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with serving(robot.provider()) as server:
        config = robot.config(server.url.replace("127.0.0.1", "robot.example"))
        async with Outbound(OutboundPolicy(), timeout_s=1.0, resolve=to_loopback) as strict:
            by_name = await build_channel(robot.type, config, None, strict).send(MESSAGE, GROUP)
            by_literal = await build_channel(robot.type, robot.config(server.url), None, strict).send(MESSAGE, GROUP)
            private = await build_channel(robot.type, robot.config("http://10.8.0.1:8080"), None, strict).send(
                MESSAGE, GROUP)
        assert server.requests == []
    assert by_name == by_literal == private == SendResult(False, NOT_ALLOWED, retry=False)


async def test_endpoint_overrides_the_provider_address(out: Outbound) -> None:
    with serving(robots.Dingtalk("tok", "s", None)) as server:
        config = {"url": "https://oapi.dingtalk.com/robot/send?access_token=tok", "secret": "s"}
        assert await build_channel("dingtalk_robot", config, server.url, out).send(MESSAGE, GROUP) == SendResult(True)
        assert server.requests[0].query["access_token"] == ["tok"]


async def test_dingtalk_timestamp_outside_the_hour_is_refused(out: Outbound) -> None:
    with serving(robots.Dingtalk("tok", "s", None)) as server:
        channel = build_channel("dingtalk_robot", {"url": f"{server.url}/robot/send?access_token=tok", "secret": "s"},
                                None, out)
        channel.clock = lambda: time.time() - 7200  # type: ignore[attr-defined]
        assert await channel.send(MESSAGE, GROUP) == SendResult(False, "provider", "310000")


async def test_feishu_message_without_its_keyword_is_refused(out: Outbound) -> None:
    with serving(robots.Feishu("h", None, "告警")) as server:
        channel = build_channel("feishu_robot", {"url": f"{server.url}/open-apis/bot/v2/hook/h"}, None, out)
        assert await channel.send(MESSAGE, GROUP) == SendResult(False, "provider", "19024")


async def test_wecom_long_text_is_clipped_to_its_limit(out: Outbound) -> None:
    long = Message(title="t", text="火" * 2000, sms={}, alarm_ids=(1,))
    with serving(robots.Wecom("k")) as server:
        channel = build_channel("wecom_robot", {"url": f"{server.url}/cgi-bin/webhook/send?key=k"}, None, out)
        assert await channel.send(long, GROUP) == SendResult(True)
        assert len(sent_text(server).encode()) <= 2048


async def test_webhook_signed_body_accepted() -> None:
    receiver = webhook.Receiver("wh-secret")
    with serving(receiver) as server:
        async with Outbound(LOCAL, timeout_s=1.0) as out:
            channel = build_channel("webhook", {"url": f"{server.url}/hook", "secret": "wh-secret"}, None, out)
            assert not channel.group
            assert await channel.send(MESSAGE, Recipient("网格员")) == SendResult(True)
        body = server.requests[0].json()
    assert body == {"notification_id": "42", "level": 1, "level_name": "grid_worker", "contact": "网格员",
                    "alarm": {"alarm_id": 7, "type": "fire"}, "text": MESSAGE.text, "link": MESSAGE.link}


@pytest.mark.parametrize(("mode", "secret", "expected"), [
    ("ok", "other", SendResult(False, "http 4xx", retry=False)),
    ("5xx", "wh-secret", SendResult(False, "http 5xx", retry=True)),
    ("slow", "wh-secret", SendResult(False, "timeout", retry=True)),
])
async def test_webhook_failures(mode: str, secret: str, expected: SendResult, out: Outbound) -> None:
    receiver = webhook.Receiver("wh-secret", mode)
    with serving(receiver) as server:
        channel = build_channel("webhook", {"url": f"{server.url}/hook", "secret": secret}, None, out)
        assert await channel.send(MESSAGE, Recipient("网格员")) == expected
