"""JSON reports (CONTRACT §2): one object per message, or an array of them on `batch/{gateway}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from devices.kinds import ALL_METRICS, KIND_NAMES, Event, Kind
from devices.reading import Reading

from .errors import BatchItemError, DecodeError
from .json_columns import readings_from_elements
from .jsontext import array_elements
from .values import (
    SEQ_LIMIT,
    check_device_id,
    check_extra,
    load_json,
    parse_event,
    parse_kind,
    parse_ts,
    show,
    storable_text,
    validate_metric,
)

#: Most reports one batch payload may carry.
MAX_BATCH = 10_000


def decode_json_report(
    payload: bytes, *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
) -> Reading:
    """One JSON report; `device_id` and `kind` may come from the topic instead of the body."""
    obj = _load_report(payload)
    if not isinstance(obj, dict):
        raise DecodeError("a JSON report must be an object")
    return reading_from_object(obj, received_ms=received_ms, topic_kind=topic_kind, topic_device=topic_device)


def decode_json_batch(payload: bytes, *, received_ms: int) -> tuple[list[Reading], list[BatchItemError]]:
    """A JSON array of reports; each element decodes on its own and a bad one is an error item.

    DecodeError only when the payload as a whole is not a JSON array (or holds over MAX_BATCH).
    """
    batch = decode_json_batch_indexed(payload, received_ms=received_ms)
    return batch.readings, batch.errors


@dataclass(slots=True)
class JsonBatch:
    """A decoded batch: its readings, its failed elements, and where each reading came from."""

    payload: bytes
    readings: list[Reading]
    errors: list[BatchItemError]
    #: Element index of each reading; None when every element decoded (reading i is element i).
    positions: list[int] | None = None
    _sources: list[str] | None = None

    def element(self, reading_index: int) -> bytes:
        """The source bytes, as sent, of the element reading `reading_index` decoded from."""
        if self._sources is None:
            self._sources = [e.source for e in array_elements(self.payload.decode("utf-8"), "the batch")]
        position = reading_index if self.positions is None else self.positions[reading_index]
        return self._sources[position].encode("utf-8")


def decode_json_batch_indexed(payload: bytes, *, received_ms: int) -> JsonBatch:
    """`decode_json_batch`, keeping each reading's element (for the dead letter of a reading the
    pipeline rejects later: unknown device, kind mismatch).

    Fast path: a batch that orjson parses whole, without 19-digit numbers (which orjson would
    turn into floats where the standard parser keeps ints), whose elements are all report objects
    with only report keys and all decode, gives exactly the readings of the slow path (property
    tested). Anything else, the first failure included, takes the slow path: the standard parser
    element by element with each element's source text, so errors and their reasons are the same.
    """
    fast = _fast_batch(payload, received_ms)
    if fast is not None:
        return JsonBatch(payload, fast, [])
    return _slow_batch(payload, received_ms)


_REPORT_KEYS = frozenset(("device_id", "kind", "ts", "seq", "event", "data", "component"))
#: Every byte mapped to b"0" if it is an ASCII digit, else to b"x": a run of 19 digits in a payload
#: is then one `bytes.find` (a regular expression such as [0-9]{19} took ~2 µs per report).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_NUMBER = b"0" * 19


def _orjson_parses_alike(payload: bytes) -> bool:
    """False when orjson could parse `payload` otherwise than the standard parser: a number of
    19 or more digits (orjson makes an integer beyond 64 bits a float, and only such a literal
    can be one). Where orjson refuses a payload, the standard parser gives the reason."""
    return payload.translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) < 0


def _load_report(payload: bytes) -> Any:
    """`load_json(payload, "the report")`, by orjson where it parses alike (about 4x faster)."""
    if _orjson_parses_alike(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return load_json(payload, "the report")


def _fast_batch(payload: bytes, received_ms: int) -> list[Reading] | None:
    """The readings of a batch every element of which decodes, or None to take the slow path.

    orjson parses it alike (`_orjson_parses_alike`), every element is an object with report keys
    only, and the columnar validator (`json_columns`) accepts every element.
    """
    if not _orjson_parses_alike(payload):
        return None
    try:
        elements = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(elements) is not list or not elements or len(elements) > MAX_BATCH:
        return None
    if not all(type(obj) is dict for obj in elements) or not set().union(*elements) <= _REPORT_KEYS:
        return None
    try:
        return readings_from_elements(elements, received_ms)
    except DecodeError:
        return None


def _slow_batch(payload: bytes, received_ms: int) -> JsonBatch:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"the batch is not UTF-8 text (bad byte at offset {e.start})") from None
    elements = array_elements(text, "the batch")
    if len(elements) > MAX_BATCH:
        raise DecodeError(f"the batch holds {len(elements)} reports, more than {MAX_BATCH}")
    readings: list[Reading] = []
    positions: list[int] = []
    errors: list[BatchItemError] = []
    for index, (source, obj, error) in enumerate(elements):
        try:
            if error is not None:
                raise error
            if not isinstance(obj, dict):
                raise DecodeError(f"report {index} is not a JSON object")
            readings.append(reading_from_object(obj, received_ms=received_ms))
            positions.append(index)
        except DecodeError as e:
            errors.append(BatchItemError(index, e.reason, source.encode("utf-8")))
    return JsonBatch(payload, readings, errors, positions, [e.source for e in elements])


def reading_from_object(
    obj: dict[str, Any], *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
) -> Reading:
    """A reading from a parsed JSON report object."""
    device_id = _agreeing("device_id", obj.get("device_id"), topic_device)
    kind = parse_kind(_agreeing("kind", obj.get("kind"), KIND_NAMES[topic_kind] if topic_kind is not None else None))
    event = obj.get("event")
    metrics, extra = split_data(obj.get("data"))
    ts = obj.get("ts")
    ts_ms = parse_ts(ts, received_ms)
    return Reading(
        device_id=check_device_id(device_id),
        kind=kind,
        event=Event.report if event is None else parse_event(event),
        ts_ms=ts_ms,
        received_ms=received_ms,
        seq=_seq(obj.get("seq")),
        metrics=metrics,
        extra=extra,
        component=_component(obj.get("component")),
        untimed=ts is None,
    )


def split_data(data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, extra) of a report's `data`: known metric names validated, the rest kept as is."""
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise DecodeError("data must be a JSON object")
    metrics: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key in ALL_METRICS:
            metrics[key] = validate_metric(key, value)
        else:
            extra[key] = check_extra(key, value)
    return metrics, extra


def encode_json_report(r: Reading) -> bytes:
    """The JSON report of `r` (compact UTF-8); `received_ms` is not part of a report."""
    doc: dict[str, Any] = {"device_id": r.device_id, "kind": r.kind.name}
    if not r.untimed:  # an untimed report had no time of its own: it still has none
        doc["ts"] = r.ts_ms
    if r.seq is not None:
        doc["seq"] = r.seq
    doc["event"] = r.event.name
    if r.component is not None:
        doc["component"] = r.component
    doc["data"] = {**r.extra, **r.metrics}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _agreeing(field: str, body: Any, topic: str | None) -> Any:
    """The body's value of `field`, or the topic's when the body has none; they must agree."""
    if body is None:
        if topic is None:
            raise DecodeError(f"the report has no {field} and the topic names none")
        return topic
    if topic is not None and body != topic:
        raise DecodeError(f"the report says {field} {show(body)} but the topic says {show(topic)}")
    return body


def _seq(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEQ_LIMIT:
        raise DecodeError(f"seq must be an integer from 0 to {SEQ_LIMIT - 1}")
    return value


def _component(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not storable_text(value):
        raise DecodeError("component must be a string of 1 to 64 characters")
    return value
