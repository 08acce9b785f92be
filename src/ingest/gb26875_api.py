"""Centre-initiated GB/T 26875.3 requests from the HTTP API (CONTRACT §4): an operator reads a
connected transmission device's status, version or clock, synchronises its clock, or runs a
duty check (查岗), and gets the device's decoded answer.

`POST /api/v1/uitd/{device_id}/requests` with `{"request": "duty_check"}`; 404 when the device is
unknown or not connected, 504 when it does not answer within the standard's retries, 502 when
its connection closes while waiting or its answer is malformed (does not decode, or is not the
type asked for).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, cast

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from devices import registry
from devices.auth import Operator
from ingest.codecs.gb26875 import Command, Frame
from ingest.codecs.gb26875_appdata import decode_app_data
from ingest.transports.gb26875_tcp import BadAnswer, GB26875Server, NotConnected, RequestTimeout, SessionClosed

router = APIRouter(prefix="/api/v1", tags=["gb26875"])

#: Request names and their application data types (GB/T 26875.3 §8.3: 81-91).
REQUESTS = {
    "read_status": 81, "read_version": 85, "read_config": 86, "read_time": 88, "sync_clock": 90, "duty_check": 91,
}
UITD_PREFIX = "uitd-"


class UitdRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: Literal["read_status", "read_version", "read_config", "read_time", "sync_clock", "duty_check"]
    duty_minutes: int = Field(10, ge=0, le=255, description="duty_check: minutes the person on duty has to answer")
    timeout_s: float = Field(10.0, gt=0, le=60, description="all attempts together (up to 3 resends)")


class Gb26875Deps(Protocol):
    """What the transmission-device routes read of the running service."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def gb26875(self) -> GB26875Server | None: ...


def deps(request: Request) -> Gb26875Deps:
    return cast(Gb26875Deps, request.state.services)


Deps = Annotated[Gb26875Deps, Depends(deps)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def answer_json(frame: Frame) -> dict[str, Any]:
    """The device's answer: its command, serial, time and decoded application data (if any)."""
    out: dict[str, Any] = {
        "command": Command(frame.command).name, "serial": frame.serial, "sent_at": _jsonable(frame.sent_at),
    }
    if frame.data:
        app = decode_app_data(frame.data)
        out["app_type"] = app.app_type
        out["objects"] = [{"object": type(o).__name__, **_jsonable(o)} for o in app.objects]
    return out


@router.post("/uitd/{device_id}/requests")
async def uitd_request(device_id: str, body: UitdRequestIn, principal: Operator, d: Deps) -> dict[str, Any]:
    """Send a request or control command to a connected transmission device and answer its reply."""
    server = d.gb26875
    if server is None:
        raise HTTPException(404, "the GB/T 26875.3 listener is disabled (MIAOXIANG_GB26875_ENABLED)")
    address_text = device_id[len(UITD_PREFIX):]
    if not device_id.startswith(UITD_PREFIX) or not (address_text.isascii() and address_text.isdigit()):
        raise HTTPException(404, f"{device_id} is not a transmission device (uitd-<address>)")
    device = await registry.get_device(d.pool, device_id)
    if device is not None and not principal.sees(device["region"], device["industry"]):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    address = int(address_text)
    objects = bytes([body.duty_minutes]) if body.request == "duty_check" else b""
    try:
        frame = await server.request(address, REQUESTS[body.request], objects, timeout=body.timeout_s)
    except NotConnected:
        raise HTTPException(404, f"{device_id} has no open session") from None
    except RequestTimeout as e:
        raise HTTPException(504, f"设备未在时限内应答 / {e}") from None
    except BadAnswer as e:
        raise HTTPException(502, f"设备的应答无法解读 / {device_id} sent a malformed answer: {e.problem}") from None
    except (SessionClosed, ConnectionError):
        raise HTTPException(502, f"{device_id} closed its connection before answering") from None
    return {"device_id": device_id, "request": body.request, "by": principal.name, "answer": answer_json(frame)}
