"""The CTWing MQ client configuration: token authentication, TLS checks, the topic naming rule,
a failover subscription, and clear refusals of settings that cannot work (no broker needed)."""

from __future__ import annotations

from typing import Any

import pulsar
import pytest

from ingest.subscriptions.ctwing_mq import ConfigError, CtwingMqConfig
from ingest.subscriptions.kinds import KINDS, subscription_kind
from ingest.subscriptions.supervisor import commit_timeout

CTWING = {
    "service_url": "pulsar+ssl://msgpush.ctwing.cn:16651", "token": "eyJhbGciOi.jwt.sig", "tenant_id": "2000001",
    "topic": "fire_alarms", "subscription": "miaoxiang",
}


def parsed(**changes: Any) -> CtwingMqConfig:
    return CtwingMqConfig.parse({**CTWING, **changes})


def test_the_short_topic_is_named_in_the_tenant_namespace_of_aep_msgpush() -> None:
    assert parsed().topic_name == "persistent://aep-msgpush/2000001/fire_alarms"


def test_a_full_topic_name_is_used_as_given() -> None:
    assert parsed(topic="persistent://other/ns/t").topic_name == "persistent://other/ns/t"


def test_the_token_authenticates_and_tls_checks_the_host_by_default() -> None:
    kwargs = parsed().client_kwargs()
    assert isinstance(kwargs["authentication"], pulsar.AuthenticationToken)
    assert kwargs["tls_validate_hostname"] is True and kwargs["tls_allow_insecure_connection"] is False
    assert "tls_trust_certs_file_path" not in kwargs  # the client's own CA bundle
    pulsar.Client(CTWING["service_url"], **kwargs).close()  # the client accepts every argument


def test_a_private_ca_and_an_unchecked_host_name_are_explicit_settings() -> None:
    kwargs = parsed(tls_trust_certs="/etc/ssl/ctwing-ca.pem", tls_validate_hostname=False).client_kwargs()
    assert kwargs["tls_trust_certs_file_path"] == "/etc/ssl/ctwing-ca.pem"
    assert kwargs["tls_validate_hostname"] is False


def test_a_plain_broker_needs_no_token() -> None:
    cfg = parsed(service_url="pulsar://127.0.0.1:6650", token=None)
    assert cfg.token is None and "authentication" not in cfg.client_kwargs()


def test_the_subscription_is_failover_from_the_earliest_message_with_a_bounded_prefetch() -> None:
    kwargs = parsed(max_unacked=64, nack_redelivery_ms=500).subscribe_kwargs()
    assert kwargs["consumer_type"] == pulsar.ConsumerType.Failover
    assert kwargs["initial_position"] == pulsar.InitialPosition.Earliest
    assert kwargs["receiver_queue_size"] == 64 and kwargs["negative_ack_redelivery_delay_ms"] == 500


@pytest.mark.parametrize(("changes", "says"), [
    ({"service_url": "https://msgpush.ctwing.cn"}, "config.service_url"),
    ({"token": None}, "config.token"),  # over TLS CTWing always wants the tenant's token
    ({"token": ""}, "config.token"),
    ({"tenant_id": "20/01"}, "config.tenant_id"),
    ({"topic": "a/b"}, "config.topic"),
    ({"topic": "persistent://only/two"}, "config.topic"),
    ({"subscription": None}, "config.subscription"),
    ({"max_unacked": 0}, "config.max_unacked"),
    ({"max_unacked": True}, "config.max_unacked"),
    ({"tls_validate_hostname": "yes"}, "config.tls_validate_hostname"),
    ({"colour": "red"}, "colour"),
])
def test_settings_that_cannot_work_are_refused_with_the_setting_named(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        CtwingMqConfig.parse({k: v for k, v in {**CTWING, **changes}.items() if v is not None})


def test_the_kind_keeps_the_token_secret_and_decodes_with_the_ctwing_codec() -> None:
    kind = subscription_kind("ctwing_mq")
    assert kind.secrets == ("token",) and kind.codec == "ctwing"
    assert KINDS["ctwing_mq"] is kind
    with pytest.raises(ValueError, match="ctwing"):
        subscription_kind("ctwing")  # an HTTP push platform is no subscription


@pytest.mark.parametrize("value", [0, -1, 601, "5", True])
def test_commit_timeout_is_bounded_seconds(value: Any) -> None:
    with pytest.raises(ValueError, match="commit_timeout_s"):
        commit_timeout({"commit_timeout_s": value})
    assert commit_timeout({}) == 30.0 and commit_timeout({"commit_timeout_s": 2}) == 2.0
