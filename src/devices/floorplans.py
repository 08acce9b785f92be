"""Floor plans: one PNG or JPEG image per unit and floor, and where devices sit on it.

Owns the tables `floor_plans` and `floor_plan_positions` (migration 0025). An upload is checked
by its bytes, not by what the client says it is (`sniff`, with Pillow): PNG or JPEG only (no SVG:
it can carry script), whole, at most `MAX_BYTES` and `MAX_PIXELS`; it is stored as uploaded. A floor is kept under its
one name (`devices.locations.floor_key`), so `3F`, `3楼` and `3` are one plan. A device sits on
at most one plan, at fractions 0..1 of the image's width and height, and only on a plan of its
own unit.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import asyncpg
from PIL import Image, UnidentifiedImageError

from devices.locations import floor_key, parse_floor
from devices.registry import Db

MAX_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000


class InvalidImage(ValueError):
    """The upload is not a usable PNG or JPEG image; the message says why."""


class NotInUnit(Exception):
    """The device is not registered in the plan's unit."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def sniff(data: bytes) -> ImageInfo:
    """The image's type and size from its own bytes, decoded once to be sure it is whole;
    `InvalidImage` for anything else. CPU-bound: call it off the event loop."""
    if len(data) > MAX_BYTES:
        raise InvalidImage(f"图片超过 {MAX_BYTES // 1048576} MiB / the image is over {MAX_BYTES // 1048576} MiB")
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise InvalidImage(f"图片像素过多 / the image has more than {MAX_PIXELS:,} pixels ({width}x{height})")
            im.load()
            return ImageInfo(Image.MIME[im.format or ""], width, height)
    except InvalidImage:
        raise
    except Image.DecompressionBombError:
        raise InvalidImage(f"图片像素过多 / the image has more than {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, KeyError):
        raise InvalidImage("只接受完整的 PNG 或 JPEG 图片 / only whole PNG or JPEG images are accepted "
                           "(not SVG or others)") from None


def fraction(value: Any, name: str) -> float:
    """A position coordinate: a number from 0 to 1 (a fraction of the image's side)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1 (a fraction of the image), got {value!r}")
    return float(value)


def _plan(r: asyncpg.Record, positions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "unit_id": r["unit_id"], "floor": r["floor"], "label": r["label"], "content_type": r["content_type"],
        "width": r["width"], "height": r["height"], "bytes": r["bytes"], "sha256": r["sha256"],
        "uploaded_by": r["uploaded_by"], "uploaded_at": r["uploaded_at"], "positions": positions,
    }


_META = ("unit_id, floor, label, content_type, width, height, octet_length(image) AS bytes, sha256, uploaded_by, "
         "uploaded_at")


async def list_plans(db: Db, unit_id: str) -> list[dict[str, Any]]:
    """The unit's plans in floor order (below ground first), each with its device positions."""
    rows = await db.fetch(f"SELECT {_META} FROM floor_plans WHERE unit_id = $1", unit_id)
    placed = await db.fetch(
        """SELECT p.floor, p.device_id, p.x, p.y FROM floor_plan_positions p JOIN devices d USING (device_id)
           WHERE p.unit_id = $1 AND d.unit_id = $1 ORDER BY p.device_id""",  # a device moved away is not shown
        unit_id,
    )
    by_floor: dict[str, list[dict[str, Any]]] = {}
    for p in placed:
        by_floor.setdefault(p["floor"], []).append({"device_id": p["device_id"], "x": p["x"], "y": p["y"]})
    plans = [_plan(r, by_floor.get(r["floor"], [])) for r in rows]
    return sorted(plans, key=lambda p: _floor_order(p["floor"]))


def _floor_order(key: str) -> tuple[int, float, str]:
    if key.startswith("B") and key[1:].isdigit():
        return (0, -int(key[1:]), key)
    return (1, int(key), key) if key.isdigit() else (2, 0, key)


async def get_plan(db: Db, unit_id: str, floor: Any) -> dict[str, Any] | None:
    key = floor_key(floor)
    return next((p for p in await list_plans(db, unit_id) if p["floor"] == key), None)


async def plan_image(db: Db, unit_id: str, floor: Any) -> asyncpg.Record | None:
    """(content_type, image, sha256) of a plan; None when there is none."""
    return await db.fetchrow(
        "SELECT content_type, image, sha256 FROM floor_plans WHERE unit_id = $1 AND floor = $2", unit_id,
        floor_key(floor),
    )


async def save_plan(db: Db, unit_id: str, floor: Any, data: bytes, by: str) -> tuple[dict[str, Any], bool]:
    """Store (or replace: positions are kept) the plan of a floor; answer (plan, created).
    `InvalidImage` for an unusable upload."""
    info = await asyncio.to_thread(sniff, data)
    label = str(parse_floor(floor))
    row = await db.fetchrow(
        f"""INSERT INTO floor_plans (unit_id, floor, label, content_type, width, height, image, sha256, uploaded_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (unit_id, floor) DO UPDATE SET label = EXCLUDED.label, content_type = EXCLUDED.content_type,
                width = EXCLUDED.width, height = EXCLUDED.height, image = EXCLUDED.image, sha256 = EXCLUDED.sha256,
                uploaded_by = EXCLUDED.uploaded_by, uploaded_at = now()
            RETURNING {_META}, (xmax = 0) AS created""",
        unit_id, floor_key(floor), label, info.content_type, info.width, info.height, data,
        hashlib.sha256(data).hexdigest(), by,
    )
    plan = await get_plan(db, unit_id, row["floor"])
    assert plan is not None
    return plan, bool(row["created"])


async def delete_plan(db: Db, unit_id: str, floor: Any) -> bool:
    """Remove a plan and the positions on it; False when there was none."""
    done = await db.execute("DELETE FROM floor_plans WHERE unit_id = $1 AND floor = $2", unit_id, floor_key(floor))
    return done != "DELETE 0"


async def place_device(db: Db, unit_id: str, floor: Any, device_id: str, x: float, y: float, by: str) -> bool:
    """Put a device of the unit at (x, y) on the floor's plan (moving it off any other plan);
    False when the plan does not exist, `NotInUnit` when the device is not the unit's."""
    key = floor_key(floor)
    row = await db.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM floor_plans WHERE unit_id = $1 AND floor = $2) AS plan,
                  EXISTS (SELECT 1 FROM devices WHERE unit_id = $1 AND device_id = $3) AS device""",
        unit_id, key, device_id,
    )
    if not row["plan"]:
        return False
    if not row["device"]:
        raise NotInUnit(device_id)
    await db.execute(
        """INSERT INTO floor_plan_positions (device_id, unit_id, floor, x, y, placed_by) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (device_id) DO UPDATE SET unit_id = EXCLUDED.unit_id, floor = EXCLUDED.floor, x = EXCLUDED.x,
               y = EXCLUDED.y, placed_by = EXCLUDED.placed_by, placed_at = now()""",
        device_id, unit_id, key, x, y, by,
    )
    return True


async def unplace_device(db: Db, unit_id: str, floor: Any, device_id: str) -> bool:
    """Take a device off the floor's plan; False when it was not on it."""
    done = await db.execute(
        "DELETE FROM floor_plan_positions WHERE unit_id = $1 AND floor = $2 AND device_id = $3",
        unit_id, floor_key(floor), device_id,
    )
    return done != "DELETE 0"
