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
