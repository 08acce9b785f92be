import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from miaoxiang.migrate import MigrationError, discover, migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR

pytestmark = pytest.mark.integration


async def test_applies_in_order_once_and_records_checksums(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("INSERT INTO t VALUES (2);")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (v int);")
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, tmp_path) == ["0001_first.sql", "0002_second.sql"]
        assert await migrate(conn, tmp_path) == []
        assert await conn.fetchval("SELECT count(*) FROM t") == 1
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == ["0001", "0002"]
        assert all(len(r["checksum"]) == 64 for r in rows)
    finally:
        await conn.close()


async def test_failed_migration_rolls_back_and_is_not_recorded(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t (v int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE u (v int); SELECT no_such_column FROM t;")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('u')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


async def test_refuses_when_an_applied_file_changed(database_url: str, tmp_path: Path) -> None:
    f = tmp_path / "0001_first.sql"
    f.write_text("CREATE TABLE t (v int);")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, tmp_path)
        f.write_text("CREATE TABLE t (v bigint);")
        with pytest.raises(MigrationError, match=r"0001_first\.sql has changed"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_file_once(database_url: str, tmp_path: Path) -> None:
    # Without the advisory lock both runners would see 0001 pending and the second CREATE would fail.
    (tmp_path / "0001_slow.sql").write_text("SELECT pg_sleep(0.3); CREATE TABLE t (v int);")
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, tmp_path) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 1]
    finally:
        for c in conns:
            await c.close()


def test_discover_rejects_badly_named_files(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_lowercase_name"):
        discover(tmp_path)


async def test_shipped_schema_applies_and_creates_daily_partitions(database_url: str, tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, tmp_path / "m")
    conn = await asyncpg.connect(database_url)
    try:
        applied = await migrate(conn, tmp_path / "m")
        assert applied[0] == "0001_initial.sql"
        made = await conn.fetchval("SELECT mx_ensure_readings_partitions(current_date, 3)")
        assert made == 3
        assert await conn.fetchval("SELECT mx_ensure_readings_partitions(current_date, 3)") == 0
        dropped = await conn.fetchval("SELECT mx_drop_readings_before(current_date + 1)")
        assert dropped == 1
    finally:
        await conn.close()


async def test_upgrade_from_v1_carries_pending_notifications_to_their_responders(
    database_url: str, tmp_path: Path
) -> None:
    """A v1 deployment upgraded with notifications still pending: each becomes a queued
    notification of the responder its v1 contact became; delivered ones are not sent again."""
    v1, all_ = tmp_path / "v1", tmp_path / "all"
    v1.mkdir()
    for f in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
        if f.name < "0010":
            shutil.copy(f, v1 / f.name)
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, all_)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, v1)
        await conn.execute("""
            INSERT INTO region_contacts (region, level, name, webhook) VALUES ('江西省', 1, '网格员', 'https://a.example/g');
            INSERT INTO units (unit_id, name, region, contacts)
                 VALUES ('U1', '南外小学', '江西省/赣州市', '[{"name": "值班室", "webhook": "https://a.example/u"}]');
            INSERT INTO alarms (alarm_key, type, severity, response, status, unit_id, region, first_seen,
                                last_seen, rule)
                 VALUES ('device:S1', 'smoke', 'major', 'verify', 'active_unack', 'U1', '江西省/赣州市', now(),
                         now(), 'r');
            INSERT INTO alarm_events (alarm_id, action, snapshot)
                 SELECT alarm_id, a, '{}' FROM alarms, (VALUES ('raised'), ('escalated')) v(a);
            INSERT INTO notification_outbox (alarm_id, event_id, level, contact, target, state)
                 SELECT alarm_id, event_id, l, c, t, s FROM alarm_events, (VALUES
                   ('raised', 2, '网格员', 'https://a.example/g', 'delivered'),
                   ('escalated', 0, '值班室', 'https://a.example/u', 'pending'),
                   ('escalated', 1, '网格员', 'https://a.example/g', 'pending')) v(e, l, c, t, s)
                  WHERE action = e;""")
        await migrate(conn, all_)
        rows = await conn.fetch("""SELECT n.level, n.reason, n.state, r.name, r.role FROM notifications n
                                     JOIN responders r USING (responder_id) ORDER BY n.level""")
        assert [tuple(r) for r in rows] == [(0, "level", "queued", "值班室", "unit_contact"),
                                            (1, "level", "queued", "网格员", "grid_worker")]
        assert await conn.fetchval("SELECT to_regclass('notification_outbox')") is None
    finally:
        await conn.close()
