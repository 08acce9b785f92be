"""Simulated responders (CONTRACT §9): the people a simulated fleet's alarms reach, and what they do.

`plan_responders(fleet)` is deterministic: a `unit_contact` per unit (scoped to it), a
`grid_worker` per street region, `micro_station`s near the units of each street (one per
`UNITS_PER_STATION` units, each a few hundred metres from one of them) and a `fire_brigade` per
city. Each has its own `webhook` channel pointing at a local `WebhookSink` path
`/hook/{responder_id}` (`channel_body`, `responder_body`: what `simulators.session` registers).

`SimResponders` is the behaviour: for every link in a message (a digest's text has one per
alarm) a responder has not had yet, after seeded delays on the simulator's clock it opens the
page (`GET /r/{token}`), acknowledges, and, for grid workers and micro stations, arrives (`lat`,
`lon` within ~30 m of the unit) and gives feedback (`fire` for an `immediate` alarm, else
`false_alarm`). Unit contacts only acknowledge; the fire brigade only receives. The delays of
the n-th link a responder receives are drawn from `Random(f"{seed}:{responder_id}:{n}")`.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from simulators.clock import SimClock
from simulators.fleet import CITY_CENTRES, SimFleet, place_near
from simulators.webhook_sink import Delivery

Role = Literal["unit_contact", "grid_worker", "micro_station", "fire_brigade"]
Action = Literal["open", "ack", "arrive", "feedback"]
UNITS_PER_STATION = 6
#: What each role does with a link, in order (`open` is the page's GET).
ACTIONS: dict[Role, tuple[Action, ...]] = {
    "unit_contact": ("open", "ack"),
    "grid_worker": ("open", "ack", "arrive", "feedback"),
    "micro_station": ("open", "ack", "arrive", "feedback"),
    "fire_brigade": (),
}
LINK = re.compile(r"https?://[^\s]+/r/([A-Za-z0-9_-]+)")
Span = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Delays:
    """Scenario seconds, drawn uniformly: from the message to the page's opening, then from each
    action to the next."""

    open: Span = (5.0, 30.0)
    ack: Span = (3.0, 15.0)
    arrive: Span = (120.0, 300.0)
    feedback: Span = (30.0, 120.0)


#: A live demo: minutes to arrive. QUICK: the CI scenario (about a second a step).
DEMO_DELAYS = Delays()
QUICK_DELAYS = Delays((0.2, 0.5), (0.2, 0.5), (0.3, 0.8), (0.2, 0.5))


@dataclass(frozen=True, slots=True)
class SimResponder:
    responder_id: str
    name: str
    role: Role
    regions: tuple[str, ...] = ()
    unit_ids: tuple[str, ...] = ()
    location: tuple[float, float] | None = None

    @property
    def channel(self) -> str:
        return f"sim-{self.responder_id}"


def plan_responders(fleet: SimFleet) -> list[SimResponder]:
    """The responders of `fleet` (a function of the fleet alone)."""
    out: list[SimResponder] = []
    by_street: dict[str, list[Any]] = defaultdict(list)
    for u in fleet.units:
        by_street[u.region].append(u)
        out.append(SimResponder(f"sim-uc-{u.unit_id}", f"{u.contacts[0]['name']}（{u.name}）", "unit_contact",
                                unit_ids=(u.unit_id,), location=u.location))
    for i, (street, units) in enumerate(sorted(by_street.items()), start=1):
        town = street.rsplit("/", 1)[-1]
        lat = sum(u.location[0] for u in units) / len(units)
        lon = sum(u.location[1] for u in units) / len(units)
        out.append(SimResponder(f"sim-gw-{i:03d}", f"{town}网格员", "grid_worker", regions=(street,),
                                location=(round(lat, 6), round(lon, 6))))
        for k in range(math.ceil(len(units) / UNITS_PER_STATION)):
            near = units[k * UNITS_PER_STATION]
            out.append(SimResponder(f"sim-ms-{i:03d}-{k + 1}", f"{town}微型消防站{k + 1}", "micro_station",
                                    regions=(street,), location=place_near(near.location, f"ms:{near.unit_id}", 0.004)))
    cities = sorted({u.region.split("/")[1] for u in fleet.units})
    for j, city in enumerate(cities, start=1):
        region = "/".join(next(u.region for u in fleet.units if u.region.split("/")[1] == city).split("/")[:2])
        out.append(SimResponder(f"sim-fb-{j}", f"{city}消防救援支队", "fire_brigade", regions=(region,),
                                location=CITY_CENTRES.get(city)))
    return out


def channel_body(r: SimResponder, sink_url: str, secret: str) -> dict[str, Any]:
    """`POST /api/v1/channels`: the responder's own webhook to the sink."""
    config = {"url": f"{sink_url}/hook/{r.responder_id}", "secret": secret}
    return {"name": r.channel, "type": "webhook", "config": config}


def responder_body(r: SimResponder) -> dict[str, Any]:
    """`POST /api/v1/responders`."""
    body: dict[str, Any] = {"responder_id": r.responder_id, "name": r.name, "role": r.role, "channels": [r.channel],
                            "regions": list(r.regions), "unit_ids": list(r.unit_ids)}
    if r.location is not None:
        body["location"] = {"lat": r.location[0], "lon": r.location[1]}
    return body


def links(body: Mapping[str, Any]) -> list[str]:
    """The responder links a webhook body carries, in order, each once: its text's (a digest has
    one per alarm), else its `link`."""
    found = [m.group(0) for m in LINK.finditer(str(body.get("text") or ""))]
    if not found and isinstance(body.get("link"), str):
        found = [body["link"]]
    return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Done:
    """One action taken: by whom, on which alarm (None when the link came from a digest line),
    the answer's status and the scenario time."""

    responder_id: str
    action: Action
    alarm_id: str | None
    status: int
    at_ms: int


@dataclass
class SimResponders:
    """Acts on the links `on_delivery` receives (hand it to a `WebhookSink`). `http` talks to
    the service's responder page (no token needed); `unit_locations` places arrivals."""

    responders: Sequence[SimResponder]
    http: httpx.AsyncClient
    clock: SimClock
    unit_locations: Mapping[str, tuple[float, float]]
    seed: int = 7
    delays: Delays = field(default_factory=Delays)
    received: Counter[str] = field(default_factory=Counter)
    done: list[Done] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _by_id: dict[str, SimResponder] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _links: Counter[str] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._by_id = {r.responder_id: r for r in self.responders}

    def on_delivery(self, d: Delivery) -> None:
        responder = self._by_id.get(d.path.removeprefix("/hook/"))
        if responder is None:
            self.errors.append(f"a message for nobody: {d.path}")
            return
        self.received[responder.responder_id] += 1
        raw = d.body.get("alarm")
        alarm: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        for link in links(d.body):
            if (responder.responder_id, link) in self._seen:
                continue
            self._seen.add((responder.responder_id, link))
            self._links[responder.responder_id] += 1
            n = self._links[responder.responder_id]
            known = alarm if link == d.body.get("link") else {}
            task = asyncio.get_running_loop().create_task(self._respond(responder, link, known, n))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _respond(self, r: SimResponder, link: str, alarm: Mapping[str, Any], n: int) -> None:
        rng = random.Random(f"{self.seed}:{r.responder_id}:{n}")
        alarm_id = None if not alarm.get("alarm_id") else str(alarm["alarm_id"])
        for action in ACTIONS[r.role]:
            await self.clock.sleep(rng.uniform(*getattr(self.delays, action)))
            try:
                if action == "open":
                    answer = await self.http.get(link)
                else:
                    answer = await self.http.post(f"{link}/{action}", data=self._form(r, action, alarm, rng))
            except httpx.HTTPError as e:
                self.errors.append(f"{r.responder_id} {action}: {type(e).__name__}")
                return
            self.done.append(Done(r.responder_id, action, alarm_id, answer.status_code, self.clock.now_ms()))
            if answer.status_code not in (200, 204):
                self.errors.append(f"{r.responder_id} {action}: HTTP {answer.status_code} {answer.text[:120]}")
                return

    def _form(self, r: SimResponder, action: Action, alarm: Mapping[str, Any], rng: random.Random) -> dict[str, str]:
        if action == "arrive":
            unit = self.unit_locations.get(str(alarm.get("unit_id")))
            where = unit or r.location
            if where is None:
                return {}
            lat, lon = place_near(where, f"{r.responder_id}:{rng.random()}", 0.0003)
            return {"lat": f"{lat:.6f}", "lon": f"{lon:.6f}"}
        if action == "feedback":
            real = alarm.get("response") == "immediate"
            return {"classification": "fire" if real else "false_alarm",
                    "note": f"{r.name}到场确认" + ("，已处置明火" if real else "，未见火情")}
        return {}

    def did(self, action: Action, alarm_id: str | None = None) -> list[Done]:
        """The actions of this kind answered 2xx (for one alarm, when given)."""
        return [d for d in self.done if d.action == action and d.status in (200, 204)
                and (alarm_id is None or d.alarm_id == alarm_id)]

    async def idle(self) -> None:
        """Wait until every started response has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the responses still waiting."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
