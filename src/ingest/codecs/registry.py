"""The one table of decoders, in the shape of ThingsBoard's IoT gateway converters.

A transport (connector) never chooses a decoder by a chain of conditions; it looks it up here:

- `REPORTS`: one report by its first byte (`{` JSON, 0xA5 MX1);
- `TOPICS`: an MQTT uplink by its topic kind (`evt`, `tel`, `batch`, `ack`);
- `PLATFORMS`: an HTTP push by its source's `platform` (`ctwing`, `onenet`, `generic`), with how
  that platform authenticates a push.

Queue subscriptions (`ingest.subscriptions.kinds`) decode with these platform codecs too
(`decode_ctwing`, `codecs.iotda.decode_iotda`, `codecs.aliyun.decode_aliyun`).

Every decoder answers a `PlatformResult` (readings, per-item errors, notices), so the transports
handle all of them alike. Adding a platform is its own codec module and one entry in `PLATFORMS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from devices.kinds import Kind
from devices.reading import Reading

from .ctwing import decode_ctwing, verify_ctwing
from .errors import DecodeError
from .generic import decode_generic, verify_generic_push
from .json_report import decode_json_batch_indexed, decode_json_report
from .mx1 import MAGIC, decode_mx1_report
from .onenet import decode_onenet, verify_onenet_push, verify_onenet_url
from .platform import PlatformNotice, PlatformResult
from .profiles import ProfileRegistry

UNKNOWN = "unknown"  # the codec label of a payload no codec takes (it is a decode error)


class UnknownCodec(LookupError):
    """A name the registry has no codec for; the message lists the names it has."""


# --- reports, by first byte -------------------------------------------------------------------
class ReportDecoder(Protocol):
    def __call__(
        self, payload: bytes, *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
    ) -> Reading: ...


@dataclass(frozen=True, slots=True)
class ReportCodec:
    name: str  # the codec label of metrics and dead letters
    decode: ReportDecoder


REPORTS: dict[int, ReportCodec] = {
    ord("{"): ReportCodec("json", decode_json_report),
    MAGIC: ReportCodec("mx1", decode_mx1_report),
}


def decode_report(
    payload: bytes, *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
) -> Reading:
    """Decode by the first byte; what the topic names (kind, device) must match the report."""
    codec = REPORTS.get(payload[0]) if payload else None
    if codec is None:
        if not payload:
            raise DecodeError("the payload is empty")
        known = ", ".join(f"{c.name} (0x{first:02x})" for first, c in REPORTS.items())
        raise DecodeError(f"the payload starts with byte 0x{payload[0]:02x}, which starts none of {known}")
    return codec.decode(payload, received_ms=received_ms, topic_kind=topic_kind, topic_device=topic_device)


def report_label(payload: bytes) -> str:
    codec = REPORTS.get(payload[0]) if payload else None
    return UNKNOWN if codec is None else codec.name


# --- MQTT uplink topics, by kind ----------------------------------------------------------------
class TopicDecoder(Protocol):
    def __call__(self, levels: list[str], payload: bytes, *, received_ms: int) -> PlatformResult: ...


@dataclass(frozen=True, slots=True)
class TopicCodec:
    levels: int  # topic levels under the root, the kind included
    label: Callable[[bytes], str]  # the codec label of a payload on this topic
    decode: TopicDecoder


def _topic_report(levels: list[str], payload: bytes, *, received_ms: int) -> PlatformResult:
    """`{evt|tel}/{kind}/{device_id}`: one report, which must be what the topic names."""
    try:
        kind = Kind.parse(levels[1])
    except ValueError as e:
        raise DecodeError(str(e)) from None
    return PlatformResult([decode_report(payload, received_ms=received_ms, topic_kind=kind, topic_device=levels[2])])


def _topic_batch(levels: list[str], payload: bytes, *, received_ms: int) -> PlatformResult:
    """`batch/{gateway}`: a JSON array of reports; a bad element is an error, not the batch."""
    batch = decode_json_batch_indexed(payload, received_ms=received_ms)
    return PlatformResult(batch.readings, batch.errors, raw_of=batch.element)


def _command_answer(levels: list[str], payload: bytes, *, received_ms: int) -> PlatformResult:
    """`ack/{kind}/{device_id}`: `{"cmd_id", "ok", "detail"}`, a command response notice."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise DecodeError("command answer is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("cmd_id"), str):
        raise DecodeError("command answer needs a string cmd_id")
    return PlatformResult(notices=[PlatformNotice("command_response", levels[2], received_ms, body)])


_REPORT_TOPIC = TopicCodec(3, report_label, _topic_report)
TOPICS: dict[str, TopicCodec] = {
    "evt": _REPORT_TOPIC,
    "tel": _REPORT_TOPIC,
    "batch": TopicCodec(2, lambda _: "json_batch", _topic_batch),
    "ack": TopicCodec(3, lambda _: "command_ack", _command_answer),
}


def topic_codec(levels: list[str]) -> TopicCodec | None:
    """The codec of a topic (its levels under the root), None when it is no uplink topic."""
    codec = TOPICS.get(levels[0]) if levels else None
    return codec if codec is not None and len(levels) == codec.levels else None


# --- HTTP push platforms, by name ---------------------------------------------------------------
class PushDecoder(Protocol):
    def __call__(
        self, body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None
    ) -> PlatformResult: ...


#: (secret, body, headers, query parameters) -> whether the push is the source's.
PushVerifier = Callable[[str, bytes, Mapping[str, str], Mapping[str, str]], bool]
#: (secret, msg, nonce, signature) -> whether a platform's check of the push URL is answered.
UrlVerifier = Callable[[str, str, str, str], bool]


@dataclass(frozen=True, slots=True)
class PushPlatform:
    name: str  # a push source's `platform`, also the codec label
    verify: PushVerifier
    refusal: str  # the 401 answer when `verify` says no
    decode: PushDecoder
    verify_url: UrlVerifier | None = None  # platforms that check a URL before pushing to it


PLATFORMS: dict[str, PushPlatform] = {
    p.name: p
    for p in (
        PushPlatform("ctwing", verify_ctwing, "bad or missing CTWing push token", decode_ctwing),
        PushPlatform("onenet", verify_onenet_push, "bad OneNET msg_signature", decode_onenet, verify_onenet_url),
        PushPlatform("generic", verify_generic_push, "bad or missing X-Miaoxiang-Signature", decode_generic),
    )
}
#: The `platform` a push source may name.
PLATFORM_NAMES = tuple(PLATFORMS)


def push_platform(name: str) -> PushPlatform:
    """The platform a push source names; `UnknownCodec` for any other name."""
    try:
        return PLATFORMS[name]
    except KeyError:
        known = ", ".join(PLATFORM_NAMES)
        raise UnknownCodec(f"push platform {name[:64]!r} is unknown; platforms are {known}") from None

