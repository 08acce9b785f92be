"""Simulated responders: who they are (a function of the fleet), the links they read, and the
webhook receiver's signature check over a real socket."""

from __future__ import annotations

import json
import time

import httpx

from alerting.response.channels.webhook import signature
from simulators.fleet import build_fleet
from simulators.responders import channel_body, links, plan_responders, responder_body
from simulators.webhook_sink import Delivery, WebhookSink


def test_every_unit_street_and_city_has_its_responders() -> None:
    fleet = build_fleet(300, 7)
    rs = plan_responders(fleet)
    assert plan_responders(build_fleet(300, 7)) == rs
    by_role = {role: [r for r in rs if r.role == role] for role in ("unit_contact", "grid_worker", "micro_station",
                                                                     "fire_brigade")}
    assert sorted(r.unit_ids[0] for r in by_role["unit_contact"]) == sorted(u.unit_id for u in fleet.units)
    streets = {u.region for u in fleet.units}
    assert {r.regions[0] for r in by_role["grid_worker"]} == streets
    assert {r.regions[0] for r in by_role["micro_station"]} == streets
    assert len(by_role["micro_station"]) >= len(fleet.units) / 6
    assert {r.regions[0] for r in by_role["fire_brigade"]} == {"/".join(s.split("/")[:2]) for s in streets}
    assert len({r.responder_id for r in rs}) == len(rs) and len({r.channel for r in rs}) == len(rs)
    for r in by_role["micro_station"]:  # within ~0.5 km of a unit of its street
        assert r.location is not None
        assert any(abs(r.location[0] - u.location[0]) <= 0.004 and abs(r.location[1] - u.location[1]) <= 0.004
                   for u in fleet.units if u.region == r.regions[0])
    body = responder_body(by_role["micro_station"][0])
    assert body["channels"] == [by_role["micro_station"][0].channel] and set(body["location"]) == {"lat", "lon"}
    assert channel_body(rs[0], "http://127.0.0.1:9", "s")["config"]["url"] == f"http://127.0.0.1:9/hook/{rs[0].responder_id}"


def test_links_of_a_single_message_and_of_a_digest() -> None:
    one = {"text": "【火警】…\n处置链接：http://127.0.0.1:8000/r/AbC_-1", "link": "http://127.0.0.1:8000/r/AbC_-1"}
    assert links(one) == ["http://127.0.0.1:8000/r/AbC_-1"]
    digest = {"text": "3 条告警\n1. 烟感 http://h/r/t1\n2. 燃气 http://h/r/t2\n另有 1 条", "link": "http://h/r/t1"}
    assert links(digest) == ["http://h/r/t1", "http://h/r/t2"]
    assert links({"text": "处置链接：未配置（MIAOXIANG_PUBLIC_URL）", "link": None}) == []


async def test_sink_accepts_only_fresh_signed_bodies() -> None:
    got: list[Delivery] = []
    async with WebhookSink("s3cret", got.append) as sink, httpx.AsyncClient(base_url=sink.url) as http:
        body = json.dumps({"notification_id": "1", "text": "x"}).encode()
        now = str(int(time.time() * 1000))
        good = {"X-Miaoxiang-Timestamp": now, "X-Miaoxiang-Signature": signature("s3cret", now, body)}
        assert (await http.post("/hook/a", content=body, headers=good)).status_code == 204
        assert (await http.post("/hook/a", content=body + b" ", headers=good)).status_code == 401
        stale = str(int(time.time() * 1000) - 301_000)
        old = {"X-Miaoxiang-Timestamp": stale, "X-Miaoxiang-Signature": signature("s3cret", stale, body)}
        assert (await http.post("/hook/a", content=body, headers=old)).status_code == 401
        array = b"[1]"
        bad = {"X-Miaoxiang-Timestamp": now, "X-Miaoxiang-Signature": signature("s3cret", now, array)}
        assert (await http.post("/hook/b", content=array, headers=bad)).status_code == 400
        assert (await http.post("/hook/a", content=body, headers=good)).status_code == 204  # same connection
    assert [(d.path, d.body["notification_id"]) for d in got] == [("/hook/a", "1"), ("/hook/a", "1")]
    assert (sink.accepted, sink.refused) == (2, 3)
