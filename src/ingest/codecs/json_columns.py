"""Columnar validation of a gateway batch whose elements orjson has parsed: the fast path of
`json_report.decode_json_batch_indexed`.

It validates exactly what `json_report.reading_from_object` validates, field by field across
the whole batch instead of element by element: every device id with one regular expression
over the joined ids, kinds and events by one dict look-up each, integer times and seqs by type
and range, each metric's values as one column (types, then range by its min and max: orjson
gives finite numbers only). What is unusual but may be valid (an RFC 3339 time, a list metric, an unknown `data`
key kept as extra, a component) is checked element by element with the slow path's own
functions. Anything invalid raises DecodeError, and the caller then decodes the batch element
by element, which gives each failing element its reason and its bytes.

Property-tested against the slow path (`tests/unit/test_ingest_fastpath.py`), malformed and
mixed batches included.
"""

from __future__ import annotations

import re
from typing import Any

from devices.kinds import ALL_METRICS, EVENT_BY_NAME, KIND_BY_NAME, Event
from devices.reading import Reading

from .errors import DecodeError
from .values import (
    _ENUMS,
    _MAX_TEXT,
    DEFAULT_RANGE,
    MAX_TS_MS,
    METRIC_TYPES,
    RANGES,
    SEQ_LIMIT,
    check_extra,
    parse_ts,
    storable_text,
    validate_metric,
)

_ID_CHARS = "[A-Za-z0-9_.:-]{1,64}"
#: The ids of a batch joined by "\n" (a character no id may hold): `devices.kinds.DEVICE_ID_RE` for each.
_JOINED_IDS = re.compile(f"{_ID_CHARS}(?:\n{_ID_CHARS})*")
_EVENTS: dict[Any, Event] = {**EVENT_BY_NAME, None: Event.report}
_NUMBER_TYPES = frozenset((int, float))
_BAD = DecodeError("a batch element does not validate")  # the caller only needs to know it failed


class _Invalid(Exception):
    """Raised inside: some element is invalid (the caller takes the slow path for its reason)."""


def readings_from_elements(elements: list[dict[str, Any]], received_ms: int) -> list[Reading]:
    """The readings of `elements` (each a dict with report keys only, parsed by orjson from a
    payload without numbers of 19 or more digits), exactly as `reading_from_object` makes them
    one by one; DecodeError if any element is invalid."""
    try:
        return _readings(elements, received_ms)
    except (_Invalid, DecodeError, TypeError, KeyError, ValueError, OverflowError):
        raise _BAD from None


def _readings(elements: list[dict[str, Any]], received_ms: int) -> list[Reading]:
    n = len(elements)
    ids = [o["device_id"] for o in elements]  # KeyError if one is missing
    joined = "\n".join(ids)  # TypeError unless every id is a str
    if _JOINED_IDS.fullmatch(joined) is None or joined.count("\n") != n - 1:
        raise _Invalid
    kinds = [KIND_BY_NAME[o["kind"]] for o in elements]  # KeyError (or TypeError) for anything else
    events = [_EVENTS[o.get("event")] for o in elements]
    tss = [o.get("ts") for o in elements]
    ts_ms = _times(tss, received_ms)
    seqs = [o.get("seq") for o in elements]
    if seqs.count(None) != n:
        for s in seqs:
            if s is not None and (type(s) is not int or not 0 <= s < SEQ_LIMIT):
                raise _Invalid
    components = [o.get("component") for o in elements]
    if components.count(None) != n:
        for c in components:
            if c is not None and (type(c) is not str or not 1 <= len(c) <= 64 or not storable_text(c)):
                raise _Invalid
    metrics, extras = _data([o.get("data") for o in elements])
    received, untimed = [received_ms] * len(tss), [t is None for t in tss]
    return list(map(Reading, ids, kinds, events, ts_ms, received, seqs, metrics, extras, components, untimed))


def _times(tss: list[Any], received_ms: int) -> list[int]:
    """The ts_ms of each element: `parse_ts` of the slow path."""
    if tss.count(None) == len(tss):
        return [received_ms] * len(tss)
    return [t if type(t) is int and 0 <= t <= MAX_TS_MS else parse_ts(t, received_ms) for t in tss]


def _data(datas: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(metrics, extra) of each element's `data`, as `split_data` gives them."""
    n = len(datas)
    if datas.count(None) == n:
        return [{} for _ in range(n)], [{} for _ in range(n)]
    dicts: list[dict[str, Any]] = []
    for d in datas:
        if d is None:
            dicts.append({})
        elif type(d) is dict:
            dicts.append(d)
        else:
            raise _Invalid
    names = set().union(*dicts)
    for name in names & ALL_METRICS:
        _validate_column(name, [d for d in dicts if name in d])
    unknown = names - ALL_METRICS
    if not unknown:
        return dicts, [{} for _ in range(n)]
    metrics: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    for d in dicts:
        if d.keys().isdisjoint(unknown):
            metrics.append(d)
            extras.append({})
            continue
        m: dict[str, Any] = {}
        x: dict[str, Any] = {}
        for key, value in d.items():
            if key in ALL_METRICS:
                m[key] = value
            else:
                x[key] = check_extra(key, value)
        metrics.append(m)
        extras.append(x)
    return metrics, extras


def _validate_column(name: str, holders: list[dict[str, Any]]) -> None:
    """Validate metric `name` in every dict holding it and store its canonical value in place
    (what `validate_metric` answers: an int given for a float metric becomes a float, ...)."""
    kind = METRIC_TYPES[name]
    values = [d[name] for d in holders]
    types = set(map(type, values))
    if kind is float or kind is int:
        if not types <= _NUMBER_TYPES:
            raise _Invalid
        lo, hi = RANGES.get(name, DEFAULT_RANGE)
        low, high = min(values), max(values)  # finite: orjson refuses NaN and infinities
        # every int metric's range fits in 2**31: its ints pass through a float unchanged
        if low < lo or high > hi:
            raise _Invalid
        if kind is float:
            if int in types:  # float(v) of each value, as validate_metric answers
                for d, v in zip(holders, values):
                    d[name] = float(v)
            return
        if float in types:  # int(v) of each whole value, as validate_metric answers
            whole = [int(v) for v in values]
            if whole != values:
                raise _Invalid
            for d, v in zip(holders, whole):
                d[name] = v
        return
    if kind is bool:
        if types != {bool}:
            raise _Invalid
        return
    if kind is str:
        if types != {str} or min(map(len, values)) < 1 or max(map(len, values)) > _MAX_TEXT:
            raise _Invalid
        if not storable_text("".join(values)):
            raise _Invalid
        allowed = _ENUMS.get(name)
        if allowed is not None and not set(values) <= set(allowed):
            raise _Invalid
        return
    for d in holders:  # lists (one value per channel or phase): element by element
        d[name] = validate_metric(name, d[name])
