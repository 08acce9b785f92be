"""The AMQP subscription's settings: what a source's config must hold, the credentials and TLS
settings built from it, and what the consumer hands over of a message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from proton import Message

from ingest.subscriptions.amqp import (
    DEFAULT_MAX_UNACKED,
    ConfigError,
    payload_of,
    settings_from_config,
    ssl_domain,
)

IOTDA = {"host": "abc.iot-amqps.cn-north-4.myhuaweicloud.com", "access_key": "ak", "access_code": "code",
         "instance_id": "inst", "queue": "DefaultQueue"}
ALIYUN = {"host": "1234.iot-amqp.cn-shanghai.aliyuncs.com", "access_key": "LTAIk", "access_secret": "s3",
          "consumer_group_id": "DEFAULT_GROUP", "client_id": "mx-1"}


def test_iotda_defaults_are_the_documented_connection() -> None:
    s = settings_from_config("iotda_amqp", IOTDA)
    assert (s.url, s.vhost, s.tls, s.max_unacked) == (
        "amqps://abc.iot-amqps.cn-north-4.myhuaweicloud.com:5671", "default", True, DEFAULT_MAX_UNACKED)
    assert s.credentials(1700000000123) == ("accessKey=ak|timestamp=1700000000123|instanceId=inst", "code")
    assert s.label == "iotda_amqp:DefaultQueue"


def test_aliyun_signs_with_the_secret_and_needs_no_queue() -> None:
    s = settings_from_config("aliyun_amqp", ALIYUN)
    user, password = s.credentials(1573489088171)
    assert user == ("mx-1|authMode=aksign,signMethod=hmacsha1,timestamp=1573489088171,authId=LTAIk,"
                    "iotInstanceId=,consumerGroupId=DEFAULT_GROUP|")
    assert password != "s3" and s.queue == "" and s.vhost is None


@pytest.mark.parametrize(("platform", "config", "says"), [
    ("iotda_amqp", {k: v for k, v in IOTDA.items() if k != "access_code"}, "access_code"),
    ("iotda_amqp", {k: v for k, v in IOTDA.items() if k != "queue"}, "queue"),
    ("aliyun_amqp", {k: v for k, v in ALIYUN.items() if k != "consumer_group_id"}, "consumer_group_id"),
    ("aliyun_amqp", {**ALIYUN, "access_code": "x"}, "unknown"),
    ("iotda_amqp", {**IOTDA, "port": "5671"}, "port"),
    ("iotda_amqp", {**IOTDA, "port": 0}, "port"),
    ("iotda_amqp", {**IOTDA, "tls": "yes"}, "tls"),
    ("iotda_amqp", {**IOTDA, "idle_timeout_s": 10}, "idle_timeout_s"),
    ("iotda_amqp", {**IOTDA, "max_unacked": 0}, "max_unacked"),
    ("iotda_amqp", {**IOTDA, "max_unacked": True}, "max_unacked"),
    ("iotda_amqp", {**IOTDA, "host": 5}, "host"),
    ("ctwing_mq", IOTDA, "AMQP"),
])
def test_bad_configs_are_refused_naming_the_setting(platform: str, config: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_config(platform, config)
    assert says in str(e.value)
    assert isinstance(e.value, ValueError)  # what the push-source routes answer 422 for


def test_tls_verifies_the_broker_and_plain_is_only_when_asked() -> None:
    assert ssl_domain(settings_from_config("iotda_amqp", IOTDA)) is not None
    assert ssl_domain(settings_from_config("iotda_amqp", {**IOTDA, "tls": False})) is None
    assert settings_from_config("iotda_amqp", {**IOTDA, "tls": False, "port": 5672}).url.startswith("amqp://")


def test_iotda_payload_is_the_body_as_delivered() -> None:
    assert payload_of("iotda_amqp", Message(body=b'{"a":1}')) == b'{"a":1}'
    assert payload_of("iotda_amqp", Message(body='{"a":"中"}')) == '{"a":"中"}'.encode()
    assert payload_of("iotda_amqp", Message(body=memoryview(b"xy"))) == b"xy"


def test_aliyun_payload_keeps_the_application_properties() -> None:
    m = Message(body=b'{"items":{}}', properties={"topic": "/pk/dn/thing/event/property/post", "messageId": 42,
                                                   "generateTime": 1573489088171})
    env = json.loads(payload_of("aliyun_amqp", m))
    assert env == {"topic": "/pk/dn/thing/event/property/post", "messageId": "42", "generateTime": 1573489088171,
                   "content": '{"items":{}}'}
