"""Dispatch selection (pure): nearest three on-duty micro stations by great-circle distance, the
fallback to stations scoped to the unit, the fire brigade of the longest region prefix; the
responder page's pure parts: photo re-encoding, the hold, the rate-limit bucket, the HTML."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta

import pytest
from PIL import Image

from alerting.response.dispatch import Candidate, Unit, distance_m, lat_lon, select
from alerting.response.page import (
    Buckets,
    PageView,
    PhotoRefused,
    clean_photo,
    duty_phone,
    hold_until,
    place,
    render,
)
from alerting.response.targets import Responder, Window

GANZHOU = "江西省/赣州市/章贡区/南外街道"
HERE = (25.8292, 114.9336)
MONDAY_NOON = datetime(2026, 12, 7, 12, 0)


def station(rid: str, north_km: float | None, *, on_duty: tuple[Window, ...] | None = None,
            unit_ids: tuple[str, ...] = (), regions: tuple[str, ...] = ()) -> Candidate:
    location = None if north_km is None else (HERE[0] + north_km / 111.195, HERE[1])
    return Candidate(Responder(rid, "micro_station", regions, unit_ids, on_duty), location)


def brigade(rid: str, *regions: str) -> Candidate:
    return Candidate(Responder(rid, "fire_brigade", tuple(regions)))


def test_haversine_distances() -> None:
    assert distance_m(HERE, HERE) == 0
    # one degree of latitude on the mean sphere is about 111.195 km
    assert distance_m((0.0, 0.0), (1.0, 0.0)) == pytest.approx(111_195, rel=1e-4)
    # Beijing to Shanghai, about 1,067 km great-circle
    assert distance_m((39.9042, 116.4074), (31.2304, 121.4737)) == pytest.approx(1_067_000, rel=0.01)
    # across the antimeridian the short way
    assert distance_m((0.0, 179.5), (0.0, -179.5)) == pytest.approx(111_195, rel=1e-3)


def test_lat_lon_accepts_only_numbers_in_range() -> None:
    assert lat_lon({"lat": 25.8, "lon": 114.9}) == (25.8, 114.9)
    assert lat_lon('{"lat": 1, "lon": 2}') == (1.0, 2.0)
    for bad in (None, {}, {"lat": "25", "lon": 1}, {"lat": 91, "lon": 0}, {"lat": 0, "lon": 181},
                {"lat": True, "lon": 0}, {"lat": float("nan"), "lon": 0}, [25, 114]):
        assert lat_lon(bad) is None


def test_nearest_three_on_duty_stations_then_the_longest_prefix_brigade() -> None:
    off = (Window(1, time(20, 0), time(22, 0)),)  # Monday evening only: not at noon
    candidates = [
        station("far", 50), station("a", 3), station("b", 1), station("asleep", 0.5, on_duty=off),
        station("c", 2), station("d", 4), station("unlocated", None, unit_ids=("GZ",)),
        brigade("province", "江西省"), brigade("city", "江西省/赣州市"), brigade("city-2", "江西省/赣州市/"),
        brigade("other", "浙江省"), brigade("near-miss", "江西省/赣州"),
    ]
    chosen = select(Unit("GZ", GANZHOU, HERE), candidates, MONDAY_NOON)
    assert chosen == [("b", 2), ("c", 2), ("a", 2), ("city", 3), ("city-2", 3)]
    # ties in distance are broken by id; the order does not depend on the input's
    tie = [station("z", 1), station("y", 1), station("x", 1), station("w", 1)]
    assert select(Unit("GZ", GANZHOU, HERE), tie[::-1], MONDAY_NOON) == [("w", 2), ("x", 2), ("y", 2)]


def test_without_locations_stations_scoped_to_the_unit() -> None:
    candidates = [station("own", None, unit_ids=("GZ",)), station("region", None, regions=("江西省",)),
                  station("located", 1), station("elsewhere", None, unit_ids=("HZ",))]
    assert select(Unit("GZ", GANZHOU, None), candidates, MONDAY_NOON) == [("own", 2)]
    candidates = [station("region", None, regions=("江西省",)), station("street", None, regions=(GANZHOU,))]
    assert select(Unit("GZ", GANZHOU, HERE), candidates, MONDAY_NOON) == [("street", 2)]
    assert select(Unit("GZ", GANZHOU, HERE), [brigade("other", "浙江省")], MONDAY_NOON) == []
    # a brigade scoped to the unit itself beats every region prefix
    unit_brigade = Candidate(Responder("own", "fire_brigade", (), ("GZ",)))
    assert select(Unit("GZ", GANZHOU, None), [brigade("street", GANZHOU), unit_brigade], MONDAY_NOON) == [("own", 3)]


def _jpeg(mode: str = "RGB", exif: bool = True, orientation: int | None = None) -> bytes:
    im = Image.new(mode, (40, 20), "red" if mode == "RGB" else 128)
    e = Image.Exif()
    if exif:
        e[0x010F] = "SecretCam"
        e[0x8825] = {2: (25.0, 49.0, 45.0)}  # GPSInfo: latitude
    if orientation is not None:
        e[0x0112] = orientation
    out = io.BytesIO()
    im.save(out, "JPEG", exif=e.tobytes())
    return out.getvalue()


def test_clean_photo_drops_metadata_and_keeps_the_picture_upright() -> None:
    raw = _jpeg()
    assert b"SecretCam" in raw
    photo = clean_photo(raw)
    assert photo.media_type == "image/jpeg" and b"SecretCam" not in photo.data and b"Exif" not in photo.data
    with Image.open(io.BytesIO(photo.data)) as im:
        assert im.size == (40, 20) and not im.getexif()
    rotated = clean_photo(_jpeg(exif=False, orientation=6))  # rotate 90° on display
    with Image.open(io.BytesIO(rotated.data)) as im:
        assert im.size == (20, 40) and not im.getexif()


def test_clean_photo_png_text_chunks_dropped_and_transparency_kept() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone private")
    im = Image.new("RGBA", (8, 8), (0, 0, 255, 100))
    out = io.BytesIO()
    im.save(out, "PNG", pnginfo=info)
    photo = clean_photo(out.getvalue())
    assert photo.media_type == "image/png" and b"someone private" not in photo.data
    with Image.open(io.BytesIO(photo.data)) as back:
        assert back.mode == "RGBA" and back.getpixel((0, 0)) == (0, 0, 255, 100) and "Author" not in back.info


def test_clean_photo_refuses_other_formats_and_garbage() -> None:
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, "GIF")
    for data in (gif.getvalue(), b"not an image", b"\xff\xd8\xff\xe0" + b"\0" * 20):
        with pytest.raises(PhotoRefused) as e:
            clean_photo(data)
        assert e.value.status == 415


def test_hold_immediate_ack_300_s_else_for_good() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    assert hold_until("ack", "immediate", now) == now + timedelta(seconds=300)
    assert hold_until("ack", "verify", now) > now + timedelta(days=365)
    assert hold_until("arrive", "immediate", now) > now + timedelta(days=365)
    assert hold_until("feedback", "immediate", now) > now + timedelta(days=365)


def test_bucket_burst_refill_and_forgetting() -> None:
    b = Buckets(burst=2, per_s=1, max_clients=2)
    assert b.take("a", 0) == 0 and b.take("a", 0) == 0
    assert b.take("a", 0) == pytest.approx(1.0)
    assert b.take("a", 1.0) == 0  # refilled one
    assert b.take("b", 0) == 0  # another address has its own
    b.take("c", 100)  # over max_clients: full buckets forgotten
    assert set(b._level) == {"c"}


def test_duty_phone_and_place() -> None:
    assert duty_phone([{"name": "x"}, {"name": "值班", "phone": " +86797123 "}]) == "+86797123"
    assert duty_phone(None) is None
    assert place({"device_id": "S1", "location": {"room": "302", "building": "A", "floor": "3F", "lat": 1}}) == (
        "A 3F 302")
    assert place({"device_id": "S1", "location": None}) == "S1"


def test_render_escapes_everything() -> None:
    view = PageView(
        token="tok", group=True, type="smoke", severity="major", response="verify", status="active_unack",
        unit_name="<script>alert(1)</script>", address='"><img src=x>', duty_phone="+86 797 1", devices=(
            ("smoke", "<b>3F</b>"),), local_time="2026-12-06 12:00:00", tz="Asia/Shanghai", happened=(), done=frozenset(
            {"ack"}))
    page = render(view)
    assert "<script>alert" not in page and "<img src=x>" not in page and "<b>3F</b>" not in page
    assert "&lt;script&gt;" in page and 'href="tel:+867971"' in page and 'name="name"' in page
    assert "已收到 ✓" in page and 'action="/r/tok/arrive"' in page
