"""Channel types (CONTRACT §9 "Channels"): each type's configuration, its secrets, the outbound
targets it reaches, and the adapter that sends through it.

`validate` checks a configuration when an admin writes it (raises `ChannelConfigError`, a
ValueError whose message is Chinese then English); `check_outbound` applies the outbound
policy to the addresses it names (raises `OutboundRefused` naming the first refused one);
`mask` is the configuration as `GET` shows it; `build_channel` makes the adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from alerting.response.channels.aliyun_sms import ENDPOINT as ALIYUN_ENDPOINT
from alerting.response.channels.aliyun_sms import AliyunSms, AliyunSmsConfig
from alerting.response.channels.base import Channel
from alerting.response.channels.dingtalk import DingtalkConfig, DingtalkRobot
from alerting.response.channels.feishu import FeishuConfig, FeishuRobot
from alerting.response.channels.smtp import Smtp, SmtpConfig
from alerting.response.channels.tencent_sms import ENDPOINT as TENCENT_ENDPOINT
from alerting.response.channels.tencent_sms import TencentSms, TencentSmsConfig
from alerting.response.channels.webhook import Webhook, WebhookConfig
from alerting.response.channels.wecom import WecomConfig, WecomRobot
from alerting.response.http import Outbound, rebase
from devices.outbound import OutboundPolicy, Resolver, check_target, system_resolver

#: what `build_channel` makes of a validated configuration
_Factory = Callable[[Any, str | None, Outbound], Channel]

#: type -> (configuration model, adapter)
TYPES: dict[str, tuple[type[BaseModel], _Factory]] = {
    "wecom_robot": (WecomConfig, WecomRobot),
    "dingtalk_robot": (DingtalkConfig, DingtalkRobot),
    "feishu_robot": (FeishuConfig, FeishuRobot),
    "smtp": (SmtpConfig, Smtp),
    "aliyun_sms": (AliyunSmsConfig, AliyunSms),
    "tencent_sms": (TencentSmsConfig, TencentSms),
    "webhook": (WebhookConfig, Webhook),
}
#: robots reach a group (one message per alarm and level however many responders list them)
GROUP_TYPES = frozenset({"wecom_robot", "dingtalk_robot", "feishu_robot"})
#: configuration fields that are secrets, by type; a `url` field is also masked in part (`mask_url`)
SECRETS: dict[str, frozenset[str]] = {
    "wecom_robot": frozenset(),
    "dingtalk_robot": frozenset({"secret"}),
    "feishu_robot": frozenset({"secret"}),
    "smtp": frozenset({"password"}),
    "aliyun_sms": frozenset({"access_key_secret"}),
    "tencent_sms": frozenset({"secret_key"}),
    "webhook": frozenset({"secret"}),
}
#: URL query parameters that are credentials (WeCom's `key`, DingTalk's `access_token`, ...)
SECRET_QUERY = frozenset({"key", "access_token", "token", "secret", "sign"})
MASK = "******"
_SMTP_NO_ENDPOINT = ("smtp 渠道不使用 endpoint，请配置 host 和 port / "
                     "an smtp channel takes no endpoint: set host and port")
_FEISHU_HOOK = re.compile(r"(/hook/)[^/]+")
#: configurations whose `url` is the target
_URL_CONFIGS = (WecomConfig, DingtalkConfig, FeishuConfig, WebhookConfig)


class ChannelConfigError(ValueError):
    """A channel type or configuration that cannot be used (the message names what is wrong)."""


def _http_url(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ChannelConfigError(f"{what} 不是有效的 URL / {what} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelConfigError(f"{what} 必须是 http(s) 地址 / {what} must be an http(s) URL with a host")


def _model(type_: str) -> type[BaseModel]:
    if type_ not in TYPES:
        raise ChannelConfigError(
            f"未知的渠道类型 {type_!r}，可选：{'、'.join(TYPES)} / "
            f"unknown channel type {type_!r}; one of {', '.join(TYPES)}")
    return TYPES[type_][0]


def parse(type_: str, config: Mapping[str, Any], endpoint: str | None) -> BaseModel:
    """The configuration model of `type_` (raises `ChannelConfigError`)."""
    model = _model(type_)
    try:
        parsed = model.model_validate(dict(config))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise ChannelConfigError(f"渠道配置无效 / invalid {type_} config: {problems}") from None
    if isinstance(parsed, _URL_CONFIGS):
        _http_url(parsed.url, "url")
    if endpoint is not None:
        if type_ == "smtp":
            raise ChannelConfigError(_SMTP_NO_ENDPOINT)
        _http_url(endpoint, "endpoint")
    return parsed


def validate(type_: str, config: Mapping[str, Any], endpoint: str | None = None) -> dict[str, Any]:
    """The configuration as stored: validated, defaults filled in, field names as the contract
    spells them (`from` for SMTP). Raises `ChannelConfigError`."""
    return parse(type_, config, endpoint).model_dump(by_alias=True)


def targets(type_: str, config: Mapping[str, Any], endpoint: str | None = None) -> list[str]:
    """The URLs a channel calls (an SMTP server as `https://host:port/` for the check)."""
    parsed = parse(type_, config, endpoint)
    if isinstance(parsed, SmtpConfig):
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        return [f"https://{host}:{parsed.port}/"]
    if isinstance(parsed, AliyunSmsConfig):
        return [endpoint or ALIYUN_ENDPOINT]
    if isinstance(parsed, TencentSmsConfig):
        return [endpoint or TENCENT_ENDPOINT]
    assert isinstance(parsed, _URL_CONFIGS)
    return [rebase(parsed.url, endpoint)]


async def check_outbound(
    type_: str, config: Mapping[str, Any], endpoint: str | None, policy: OutboundPolicy,
    resolve: Resolver = system_resolver,
) -> None:
    """The outbound policy's check at creation: raises `OutboundRefused` (its message names the
    address and the setting that would allow it) or `ChannelConfigError`."""
    for url in targets(type_, config, endpoint):
        await check_target(url, policy, resolve)


def mask_url(url: str) -> str:
    """`url` with its credentials masked: password, credential query parameters and a Feishu
    hook's token (the last path segment after `/hook/`)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    except ValueError:
        return MASK
    query = urlencode([(k, MASK if k.lower() in SECRET_QUERY else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, _FEISHU_HOOK.sub(rf"\g<1>{MASK}", parts.path), query, parts.fragment))


def mask(type_: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration as `GET` shows it: every secret masked, URLs' credentials too."""
    secrets = SECRETS.get(type_, frozenset())
    shown: dict[str, Any] = {}
    for key, value in config.items():
        if key in secrets and value:
            shown[key] = MASK
        elif key in ("url", "endpoint") and isinstance(value, str):
            shown[key] = mask_url(value)
        else:
            shown[key] = value
    return shown


def build_channel(type_: str, config: Mapping[str, Any], endpoint: str | None, http: Outbound) -> Channel:
    """The adapter of a stored channel (raises `ChannelConfigError` for a configuration that no
    longer validates)."""
    return TYPES[type_][1](parse(type_, config, endpoint), endpoint, http)

