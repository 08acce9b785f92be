"""The codec registry: a report by its first byte, an MQTT uplink by its topic kind, an HTTP
push by its source's platform; every registered name dispatches to its codec, any other is a
clear error."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from devices.api import SUBSCRIPTION_PLATFORMS as API_SUBSCRIPTION_PLATFORMS
from devices.api import PushSourceIn
from devices.kinds import Event, Kind
from devices.reading import Reading
from devices.registry import SECRET_SETTINGS
from ingest.codecs.errors import DecodeError
from ingest.codecs.generic import hmac_signature
from ingest.codecs.json_report import encode_json_report
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.platform import PlatformNotice
from ingest.codecs.profiles import ProfileRegistry
from ingest.codecs.registry import (
    PLATFORM_NAMES,
    PLATFORMS,
    REPORTS,
    TOPICS,
    UnknownCodec,
    decode_report,
    push_platform,
    report_label,
    topic_codec,
)
from ingest.subscriptions.kinds import KINDS, SUBSCRIPTION_PLATFORMS
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR

READING = Reading(
    "868120301234567",
    Kind.water,
    Event.report,
    1_795_341_600_000,
    1_795_341_600_100,
    seq=3,
    metrics={"pressure_mpa": 0.35},
)


@pytest.mark.parametrize("encode", [encode_json_report, encode_mx1])
def test_json_and_mx1_decode_to_the_same_reading(encode: Callable[[Reading], bytes]) -> None:
    assert (
        decode_report(
            encode(READING), received_ms=READING.received_ms, topic_kind=Kind.water, topic_device=READING.device_id
        )
        == READING
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b" {}", "starts with byte 0x20"),
        (b"[{}]", "starts with byte 0x5b"),
        (b"\xa4\x01", "starts with byte 0xa4"),
        (b"\xa5\x01", "shorter than the minimum"),
        (b"{", "not valid JSON"),
    ],
)
def test_other_first_bytes_are_decode_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_report(payload, received_ms=0, topic_kind=Kind.smoke, topic_device="d1")


def test_every_report_codec_is_registered_by_its_first_byte() -> None:
    encoders = {"json": encode_json_report, "mx1": encode_mx1}
    assert sorted(c.name for c in REPORTS.values()) == sorted(encoders)
    for first, codec in REPORTS.items():
        payload = encoders[codec.name](READING)
        assert payload[0] == first and report_label(payload) == codec.name
        assert codec.decode(payload, received_ms=READING.received_ms) == READING
    assert report_label(b"") == report_label(b"[") == "unknown"
    with pytest.raises(DecodeError, match=r"starts none of json \(0x7b\), mx1 \(0xa5\)"):
        decode_report(b"<xml/>", received_ms=0)


TOPIC_PAYLOADS = {
    "evt": (["evt", "water", READING.device_id], encode_mx1(READING), "mx1"),
    "tel": (["tel", "water", READING.device_id], encode_json_report(READING), "json"),
    "batch": (["batch", "gw-1"], b"[" + encode_json_report(READING) + b',{"kind":"smoke"}]', "json_batch"),
    "ack": (["ack", "water", READING.device_id], b'{"cmd_id":"c-1","ok":true}', "command_ack"),
}


def test_every_topic_kind_dispatches_to_its_codec() -> None:
    assert set(TOPICS) == set(TOPIC_PAYLOADS)
    results = {}
    for kind, (levels, payload, label) in TOPIC_PAYLOADS.items():
        codec = topic_codec(levels)
        assert codec is TOPICS[kind] and codec.label(payload) == label
        results[kind] = codec.decode(levels, payload, received_ms=READING.received_ms)
    assert results["evt"].readings == results["tel"].readings == [READING]
    assert results["batch"].readings == [READING] and [e.index for e in results["batch"].errors] == [1]
    assert results["batch"].raw_of is not None and results["batch"].raw_of(0) == encode_json_report(READING)
    assert results["ack"].notices == [
        PlatformNotice("command_response", READING.device_id, READING.received_ms, {"cmd_id": "c-1", "ok": True})
    ]
    with pytest.raises(DecodeError, match="the MX1 frame says kind water but the topic says smoke"):
        topic_codec(["evt", "smoke", READING.device_id]).decode(  # type: ignore[union-attr]
            ["evt", "smoke", READING.device_id], encode_mx1(READING), received_ms=0
        )
    with pytest.raises(DecodeError, match="command answer needs a string cmd_id"):
        TOPICS["ack"].decode(["ack", "water", "d1"], b'{"ok":true}', received_ms=0)


@pytest.mark.parametrize(
    "levels", [[], [""], ["down", "smoke", "d1"], ["evt", "smoke"], ["batch", "gw", "x"], ["ack", "d1"]]
)
def test_other_topics_have_no_codec(levels: list[str]) -> None:
    assert topic_codec(levels) is None


SECRET = "s3cret"
IMEI = "868120301234567"
PROFILES = ProfileRegistry.load()


def _onenet_body(token: str) -> bytes:
    msg = json.dumps({"at": 1_795_341_600_000, "type": 2, "imei": IMEI, "status": 1})
    sig = base64.b64encode(hashlib.md5((token + "n1" + msg).encode()).digest()).decode()
    return ('{"msg":' + msg + ',"nonce":"n1","msg_signature":"' + sig + '"}').encode()


_CTWING = json.dumps({"messageType": "deviceOnlineOfflineReport", "eventType": 0, "IMEI": IMEI}).encode()
_GENERIC = encode_json_report(READING)
#: platform -> (body, headers, query) of a push that is the source's, and what it decodes to.
PUSHES = {
    "ctwing": (_CTWING, {}, {"token": SECRET}, ("notice", "offline")),
    "onenet": (_onenet_body(SECRET), {}, {}, ("notice", "online")),
    "generic": (
        _GENERIC, {"x-miaoxiang-signature": hmac_signature(SECRET, _GENERIC)}, {}, ("reading", READING.device_id)
    ),
}


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_every_push_platform_verifies_and_decodes_its_own_pushes(name: str) -> None:
    body, headers, query, (what, expected) = PUSHES[name]
    platform = push_platform(name)
    assert platform is PLATFORMS[name] and platform.name == name
    assert platform.verify(SECRET, body, headers, query)
    assert not platform.verify("other-secret", body, headers, query)
    if headers or query:  # the credential travels beside the body (OneNET signs inside it)
        assert not platform.verify(SECRET, body, {}, {})
    result = platform.decode(body, received_ms=READING.received_ms, profiles=PROFILES, profile=None)
    if what == "notice":
        assert [(n.kind, n.device_id) for n in result.notices] == [(expected, IMEI)]
    else:
        assert [r.device_id for r in result.readings] == [expected]


def test_only_onenet_checks_a_push_url() -> None:
    assert [n for n in PLATFORM_NAMES if PLATFORMS[n].verify_url is not None] == ["onenet"]


def test_an_unknown_platform_is_a_clear_error() -> None:
    with pytest.raises(UnknownCodec, match="push platform 'nbiot-x' is unknown; platforms are ctwing, onenet, generic"):
        push_platform("nbiot-x")


def test_the_api_and_the_database_accept_exactly_the_registered_platforms() -> None:
    """Adding a platform (HTTP push or subscription) to the registry must also open POST
    /push-sources and the table's check (as the newest migration that sets it leaves it)."""
    api = typing.get_args(PushSourceIn.model_fields["platform"].annotation)
    sql = (Path(DEFAULT_MIGRATIONS_DIR) / "0015_subscriptions.sql").read_text()
    check = re.search(r"CHECK \(platform IN \(([^)]*)\)\)", sql)
    assert check is not None
    registered = sorted((*PLATFORM_NAMES, *SUBSCRIPTION_PLATFORMS))
    assert sorted(api) == registered == sorted(v.strip(" '") for v in check.group(1).split(","))
    assert API_SUBSCRIPTION_PLATFORMS == SUBSCRIPTION_PLATFORMS
    assert set(KINDS) <= set(SUBSCRIPTION_PLATFORMS)


def test_every_subscription_secret_is_kept_from_the_api() -> None:
    """The devices side redacts a literal set of settings: every kind's secrets must be in it."""
    assert {s for kind in KINDS.values() for s in kind.secrets} <= SECRET_SETTINGS
