"""The subscription platforms a push source may name, and how each is consumed and decoded.

`SUBSCRIPTION_PLATFORMS` is every kind the API and the `push_sources` check admit; `KINDS` holds
those this build can run (ctwing_mq here; the AMQP 1.0 kinds add their entries). A kind checks its
`config` (`ValueError` with the reason), names its secret settings (never answered by the API),
builds its consumer and decodes its messages with a platform codec and the device profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ingest.codecs.aliyun import decode_aliyun
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.iotda import decode_iotda
from ingest.codecs.registry import PushDecoder

from . import amqp
from .base import Consumer
from .ctwing_mq import CtwingMqConfig, PulsarConsumer

SUBSCRIPTION_PLATFORMS = ("ctwing_mq", "iotda_amqp", "aliyun_amqp")


@dataclass(frozen=True, slots=True)
class SubscriptionKind:
    name: str  # a push source's `platform`
    codec: str  # the codec label of its messages (metrics, dead letters)
    decode: PushDecoder
    check: Callable[[Mapping[str, Any]], object]  # raises ValueError
    build: Callable[[Mapping[str, Any], str], Consumer]  # (config, label) -> consumer
    secrets: tuple[str, ...]  # config settings never answered


def _ctwing_mq(config: Mapping[str, Any], label: str) -> Consumer:
    return PulsarConsumer(CtwingMqConfig.parse(config), label)


KINDS: dict[str, SubscriptionKind] = {
    k.name: k
    for k in (
        SubscriptionKind("ctwing_mq", "ctwing", decode_ctwing, CtwingMqConfig.parse, _ctwing_mq, ("token",)),
        SubscriptionKind("iotda_amqp", "iotda", decode_iotda, partial(amqp.settings_from_config, "iotda_amqp"),
                         partial(amqp.consumer, "iotda_amqp"), ("access_code",)),
        SubscriptionKind("aliyun_amqp", "aliyun", decode_aliyun, partial(amqp.settings_from_config, "aliyun_amqp"),
                         partial(amqp.consumer, "aliyun_amqp"), ("access_secret",)),
    )
}


def subscription_kind(name: str) -> SubscriptionKind:
    """The kind a source names; `ValueError` for an HTTP platform or one this build cannot run."""
    kind = KINDS.get(name)
    if kind is None:
        raise ValueError(f"平台 {name!r} 的订阅在此版本中不可用 / subscriptions of platform {name!r} are not "
                         f"available in this build; available: {', '.join(KINDS)}")
    return kind
