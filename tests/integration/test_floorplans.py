"""Floor plans through the service (issue 19): upload by an operator, content sniffed, size capped,
served back with an ETag, devices placed as fractions of the image; structured locations on the
registration routes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from devices.floorplans import MAX_BYTES
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service

pytestmark = pytest.mark.integration
REGION = "江西省/赣州市/章贡区/南外街道"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (240, 240, 230)).save(out, fmt)
    return out.getvalue()


async def seed(svc: RunningService) -> dict[str, str]:
    a = svc.auth()
    for unit_id, region in (("U-fp", REGION), ("U-other", "江西省/赣州市/南康区")):
        r = await svc.http.post("/api/v1/units", headers=a, json={"unit_id": unit_id, "name": unit_id, "region": region,
                                                                  "location": {"lat": 25.83, "lon": 114.93}})
        assert r.status_code == 201, r.text
    for device_id, unit_id in (("fp-smoke-1", "U-fp"), ("fp-smoke-2", "U-fp"), ("other-1", "U-other")):
        r = await svc.http.post("/api/v1/devices", headers=a, json={
            "device_id": device_id, "kind": "smoke", "unit_id": unit_id,
            "location": {"building": "1号楼", "floor": "3F", "room": "302"}})
        assert r.status_code == 201, r.text
    tokens = {}
    nankang = ["江西省/赣州市/南康区"]
    for name, role, regions in (("op", "operator", []), ("view", "viewer", []), ("nk", "operator", nankang)):
        r = await svc.http.post("/api/v1/tokens", headers=a, json={"name": name, "role": role, "regions": regions})
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    return tokens


async def test_upload_serve_place_and_remove_a_floor_plan(settings: Settings) -> None:
    async with running_service(settings) as svc:
        tokens = await seed(svc)
        op, viewer = svc.auth(tokens["op"]), svc.auth(tokens["view"])
        base = "/api/v1/units/U-fp/floorplans"
        png = image_bytes("PNG")
        r = await svc.http.put(f"{base}/3F", content=png, headers={**op, "content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        plan = r.json()
        assert (plan["floor"], plan["label"], plan["content_type"], plan["width"], plan["height"], plan["bytes"]) == (
            "3", "3F", "image/png", 64, 40, len(png))
        assert plan["uploaded_by"] == "op" and plan["positions"] == []

        assert (await svc.http.put(f"{base}/3F", content=png, headers=viewer)).status_code == 403
        assert (await svc.http.put(f"{base}/3F", content=png, headers=svc.auth(tokens["nk"]))).status_code == 403
        assert (await svc.http.get(base, headers=svc.auth(tokens["nk"]))).status_code == 403

        image = await svc.http.get(f"{base}/3楼/image", headers=viewer)  # the same floor, written otherwise
        assert image.status_code == 200 and image.content == png and image.headers["content-type"] == "image/png"
        again = await svc.http.get(f"{base}/3/image", headers={**viewer, "if-none-match": image.headers["etag"]})
        assert again.status_code == 304

        r = await svc.http.put(f"{base}/3/devices/fp-smoke-1", json={"x": 0.25, "y": 0.5}, headers=op)
        assert r.status_code == 200, r.text
        jpeg = image_bytes("JPEG", (80, 50))
        r = await svc.http.put(f"{base}/3", content=jpeg, headers=op)  # a redrawn plan keeps the places
        assert r.status_code == 200 and (r.json()["content_type"], r.json()["width"]) == ("image/jpeg", 80)
        assert r.json()["positions"] == [{"device_id": "fp-smoke-1", "x": 0.25, "y": 0.5}]

        for body, says in (({"x": 1.5, "y": 0.5}, "x must be a number from 0 to 1"),
                           ({"x": 0.5, "y": "top"}, "y must be a number from 0 to 1"),
                           ({"x": True, "y": 0.5}, "x must be a number from 0 to 1")):
            r = await svc.http.put(f"{base}/3/devices/fp-smoke-2", json=body, headers=op)
            assert r.status_code == 422 and says in r.text, r.text
        r = await svc.http.put(f"{base}/3/devices/other-1", json={"x": 0.1, "y": 0.1}, headers=op)
        assert r.status_code == 422 and "not in unit U-fp" in r.text
        r = await svc.http.put(f"{base}/B1/devices/fp-smoke-2", json={"x": 0.1, "y": 0.1}, headers=op)
        assert r.status_code == 404 and "no plan of floor B1" in r.text
        r = await svc.http.put(f"{base}/3/devices/fp-smoke-2", json={"x": 0, "y": 1}, headers=viewer)
        assert r.status_code == 403

        # a second floor below ground; the list is in floor order, each plan with its devices
        assert (await svc.http.put(f"{base}/地下1层", content=png, headers=op)).status_code == 201
        r = await svc.http.put(f"{base}/B1/devices/fp-smoke-2", json={"x": 1, "y": 0}, headers=op)
        assert r.status_code == 200
        plans = (await svc.http.get(base, headers=viewer)).json()["items"]
        assert [(p["floor"], [d["device_id"] for d in p["positions"]]) for p in plans] == [
            ("B1", ["fp-smoke-2"]), ("3", ["fp-smoke-1"])]
        # moving a device to another plan takes it off the first
        r = await svc.http.put(f"{base}/B1/devices/fp-smoke-1", json={"x": 0.5, "y": 0.5}, headers=op)
        assert r.status_code == 200
        plans = (await svc.http.get(base, headers=viewer)).json()["items"]
        assert [len(p["positions"]) for p in plans] == [2, 0]

        assert (await svc.http.delete(f"{base}/B1/devices/fp-smoke-1", headers=op)).status_code == 204
        assert (await svc.http.delete(f"{base}/B1/devices/fp-smoke-1", headers=op)).status_code == 404
        assert (await svc.http.delete(f"{base}/B1", headers=op)).status_code == 204
        assert (await svc.http.get(f"{base}/B1", headers=viewer)).status_code == 404
        assert [p["floor"] for p in (await svc.http.get(base, headers=viewer)).json()["items"]] == ["3"]
        third = (await svc.http.get(base, params={"floor": "3楼"}, headers=viewer)).json()["items"]
        assert [p["floor"] for p in third] == ["3"]
        assert (await svc.http.get(base, params={"floor": "B1"}, headers=viewer)).json()["items"] == []
        assert (await svc.http.get("/api/v1/units/U-none/floorplans", headers=viewer)).status_code == 404


async def test_only_whole_png_or_jpeg_within_the_limit_is_accepted(settings: Settings) -> None:
    async with running_service(settings) as svc:
        tokens = await seed(svc)
        op = svc.auth(tokens["op"])
        url = "/api/v1/units/U-fp/floorplans/2"
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        png = image_bytes("PNG")
        for body in (svg, b"GIF89a" + bytes(100), png[: len(png) // 2], b""):
            r = await svc.http.put(url, content=body, headers={**op, "content-type": "image/png"})
            assert r.status_code == 422 and "PNG 或 JPEG" in r.json()["detail"], (body[:10], r.text)
        r = await svc.http.put(url, content=png + bytes(MAX_BYTES), headers=op)
        assert r.status_code == 413
        huge = image_bytes("PNG", (8000, 6000))  # small file, too many pixels
        r = await svc.http.put(url, content=huge, headers=op)
        assert r.status_code == 422 and "pixels" in r.text
        r = await svc.http.put("/api/v1/units/U-fp/floorplans/" + "x" * 17, content=png, headers=op)
        assert r.status_code == 422 and "floor must be" in r.text
        assert (await svc.http.get("/api/v1/units/U-fp/floorplans", headers=op)).json()["items"] == []


async def test_structured_locations_on_the_registration_routes(settings: Settings) -> None:
    async with running_service(settings) as svc:
        await seed(svc)
        a = svc.auth()
        device = (await svc.http.get("/api/v1/devices/fp-smoke-1", headers=a)).json()
        assert device["location"] == {"building": "1号楼", "floor": "3F", "room": "302"}
        for location, says in (({"lat": 91, "lon": 0}, "lat must be from -90 to 90"),
                               ({"lat": 25.8}, "lat and lon go together"),
                               ({"floor": 1.5}, "floor must be a whole number or a text")):
            r = await svc.http.post("/api/v1/devices", headers=a, json={"device_id": "bad-1", "kind": "smoke",
                                                                        "unit_id": "U-fp", "location": location})
            assert r.status_code == 422 and says in r.text, r.text
            r = await svc.http.post("/api/v1/units", headers=a, json={"name": "bad", "location": location})
            assert r.status_code == 422 and says in r.text, r.text
        csv = "device_id,kind,unit_id,building,floor,room,lat,lon\nfp-csv-1,gas,U-fp,2号楼,B1,车库,25.8,114.9\n"
        r = await svc.http.post("/api/v1/devices/import", content=csv, headers={**a, "content-type": "text/csv"})
        assert r.json()["created"] == 1, r.text
        device = (await svc.http.get("/api/v1/devices/fp-csv-1", headers=a)).json()
        assert device["location"] == {"building": "2号楼", "floor": "B1", "room": "车库", "lat": 25.8, "lon": 114.9}
