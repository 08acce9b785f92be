"""The channel registry: per-type configuration checks, masking of secrets, outbound targets."""

from __future__ import annotations

import re

import pytest

from alerting.response.channels import registry
from alerting.response.channels.registry import ChannelConfigError, check_outbound, mask, mask_url, targets, validate
from devices.outbound import OutboundPolicy, OutboundRefused

DINGTALK = {"url": "https://oapi.dingtalk.com/robot/send?access_token=566cc69da782ec", "secret": "SECabc",
            "keyword": "告警"}
SMTP = {"host": "smtp.exmail.qq.com", "port": 465, "user": "mx", "password": "pw", "from": "alarm@example.com",
        "tls": "implicit"}
ALIYUN = {"access_key_id": "LTAI", "access_key_secret": "s3cret", "sign_name": "秒响", "template_code": "SMS_1"}


def test_every_type_has_its_secrets_listed() -> None:
    assert set(registry.SECRETS) == set(registry.TYPES)
    assert registry.GROUP_TYPES == {"wecom_robot", "dingtalk_robot", "feishu_robot"}


@pytest.mark.parametrize(("type_", "config", "endpoint", "says"), [
    ("sms", {}, None, "unknown channel type"),
    ("dingtalk_robot", {"url": "ftp://x/robot"}, None, r"http\(s\) URL"),
    ("dingtalk_robot", {"url": "https://x/robot", "extra": 1}, None, "extra"),
    ("smtp", {**SMTP, "tls": "none"}, None, "tls"),
    ("smtp", {**SMTP, "port": 0}, None, "port"),
    ("smtp", SMTP, "https://relay.example", "no endpoint"),
    ("aliyun_sms", {"access_key_id": "x"}, None, "access_key_secret"),
    ("tencent_sms", {}, None, "secret_id"),
    ("webhook", {"url": "https://h.example/x"}, None, "secret"),
    ("wecom_robot", {"url": "https://qyapi.weixin.qq.com/x"}, "not a url", "endpoint"),
])
def test_bad_configs_are_refused_naming_the_problem(type_: str, config: dict, endpoint: str | None, says: str) -> None:
    with pytest.raises(ChannelConfigError, match=says):
        validate(type_, config, endpoint)


def test_validate_fills_defaults_and_keeps_the_contract_names() -> None:
    assert validate("smtp", SMTP)["from"] == "alarm@example.com"
    assert validate("aliyun_sms", ALIYUN)["region"] == "cn-hangzhou"
    assert validate("dingtalk_robot", {"url": DINGTALK["url"]}) == {"url": DINGTALK["url"], "secret": None,
                                                                    "keyword": None}


def test_mask_hides_every_secret_and_url_credentials() -> None:
    shown = mask("dingtalk_robot", DINGTALK)
    assert shown == {"url": "https://oapi.dingtalk.com/robot/send?access_token=******", "secret": "******",
                     "keyword": "告警"}
    assert mask("wecom_robot", {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a&debug=1"}) == {
        "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=******&debug=1"}
    assert mask("feishu_robot", {"url": "https://open.feishu.cn/open-apis/bot/v2/hook/2b47-c1"})["url"] \
        == "https://open.feishu.cn/open-apis/bot/v2/hook/******"
    assert mask("smtp", SMTP)["password"] == "******"
    assert mask("aliyun_sms", ALIYUN)["access_key_secret"] == "******"
    assert mask_url("https://u:pw@h.example/x?token=t") == "https://u:******@h.example/x?token=******"
    for type_, config in [("dingtalk_robot", DINGTALK), ("smtp", SMTP), ("aliyun_sms", ALIYUN)]:
        assert not {"566cc69da782ec", "SECabc", "pw", "s3cret"} & {str(v) for v in mask(type_, config).values()}


def test_targets_follow_the_endpoint() -> None:
    assert targets("dingtalk_robot", DINGTALK, "http://127.0.0.1:9000") == [
        "http://127.0.0.1:9000/robot/send?access_token=566cc69da782ec"]
    assert targets("aliyun_sms", ALIYUN) == ["https://dysmsapi.aliyuncs.com/"]
    assert targets("smtp", SMTP) == ["https://smtp.exmail.qq.com:465/"]


async def test_check_outbound_refuses_internal_addresses_naming_them() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    with pytest.raises(OutboundRefused, match=re.escape("100.100.100.200")):
        await check_outbound("aliyun_sms", ALIYUN, "http://100.100.100.200/", OutboundPolicy())
    with pytest.raises(OutboundRefused, match=re.escape("10.1.2.3")):
        await check_outbound("smtp", SMTP, None, OutboundPolicy(), resolve)
    await check_outbound("smtp", SMTP, None, OutboundPolicy.parse(["10.0.0.0/8"]), resolve)
