"""Simulated actuators (CONTRACT §6, §10): a gas valve, a breaker or a charging pile on MQTT.

Each takes the commands published on its `down` topic, answers on `ack` (`{"cmd_id", "ok",
"detail"}`) and then reports what it did as an `evt` report: `valve_closed` / `valve_opened`
(with `valve`), `breaker_tripped` / `breaker_closed` (with `breaker`), `port_cutoff` (with the
`port`, absent for every port). A `silent` one takes commands and never answers nor acts (a jammed
valve, a device out of reach); a `refusing` one answers `ok: false` and stays as it was. Repeats
of a `cmd_id` (the service retries) are answered again and acted on once.

    python -m simulators.actuators --mqtt mqtt://127.0.0.1:1883 --root mx/v1/default gas:g1 electrical:e1 \\
        charger:c1 --silent g1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

#: command -> (the event reported once done, the metrics it carries)
ACTS: dict[str, tuple[str, dict[str, Any]]] = {
    "valve_close": ("valve_closed", {"valve": "closed"}),
    "valve_open": ("valve_opened", {"valve": "open"}),
    "breaker_trip": ("breaker_tripped", {"breaker": "tripped"}),
    "breaker_close": ("breaker_closed", {"breaker": "closed"}),
    "port_cutoff": ("port_cutoff", {}),
    "port_enable": ("report", {}),
}
KINDS = ("gas", "electrical", "charger")


@dataclass
class Actuator:
    """One simulated device and what it received."""

    device_id: str
    kind: str
    silent: bool = False
    refusing: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"an actuator is one of {', '.join(KINDS)}, not {self.kind!r}")


Message = dict[str, Any]


def answer(actuator: Actuator, command: Message, now_ms: int) -> tuple[Message | None, Message | None]:
    """(the ack, the state report) an actuator sends for a command; None for what it does not send."""
    actuator.received.append(command)
    if actuator.silent:
        return None, None
    cmd_id, cmd = command.get("cmd_id"), command.get("cmd")
    act = ACTS.get(str(cmd))
    if actuator.refusing or act is None:
        return {"cmd_id": cmd_id, "ok": False, "detail": "refused" if act else f"unknown command {cmd}"}, None
    ack = {"cmd_id": cmd_id, "ok": True, "detail": f"{cmd} done"}
    if cmd_id in actuator.done:
        return ack, None  # a retry of a command already carried out
    actuator.done.add(str(cmd_id))
    event, data = act
    data = dict(data)
    port = (command.get("params") or {}).get("port")
    if cmd == "port_cutoff" and port is not None:
        data["port"] = port
    report = {"device_id": actuator.device_id, "kind": actuator.kind, "ts": now_ms, "event": event, "data": data}
    return ack, report


class Actuators:
    """The actuators on one broker under one topic root (`{prefix}/{tenant}`); `ready` once subscribed."""

    def __init__(
        self, host: str, port: int, root: str, actuators: Sequence[Actuator],
        clock: Callable[[], int] = lambda: round(time.time() * 1000),
    ) -> None:
        self.host, self.port, self.root = host, port, root.rstrip("/")
        self.by_topic = {f"{self.root}/down/{a.kind}/{a.device_id}": a for a in actuators}
        self.clock = clock
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled."""
        async with aiomqtt.Client(self.host, self.port) as client:
            for topic in self.by_topic:
                await client.subscribe(topic, qos=1)
            self.ready.set()
            async for message in client.messages:
                actuator = self.by_topic.get(str(message.topic))
                if actuator is None:
                    continue
                try:
                    command = json.loads(bytes(message.payload))
                except ValueError:
                    continue
                ack, report = answer(actuator, command, self.clock())
                where = f"{actuator.kind}/{actuator.device_id}"
                if ack is not None:
                    await client.publish(f"{self.root}/ack/{where}", json.dumps(ack), qos=1)
                if report is not None:
                    await client.publish(f"{self.root}/evt/{where}", json.dumps(report), qos=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--root", default="mx/v1/default", help="topic prefix and tenant")
    parser.add_argument("--silent", action="append", default=[], help="a device_id that never answers")
    parser.add_argument("--refusing", action="append", default=[], help="a device_id that answers ok: false")
    parser.add_argument("devices", nargs="+", help="kind:device_id, kind one of gas, electrical, charger")
    args = parser.parse_args(argv)
    actuators = []
    for spec in args.devices:
        kind, _, device_id = spec.partition(":")
        actuators.append(Actuator(device_id, kind, device_id in args.silent, device_id in args.refusing))
    url = urlsplit(args.mqtt)
    asyncio.run(Actuators(url.hostname or "127.0.0.1", url.port or 1883, args.root, actuators).run())


if __name__ == "__main__":
    main()
