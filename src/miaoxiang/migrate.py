"""Plain-SQL migrations applied in order, each in a transaction, under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

#: pg_advisory_lock key: "miaoxiang" folded into a bigint; every process uses the same one.
LOCK_KEY = 0x6D69616F7869616E & 0x7FFFFFFFFFFFFFFF
FILE_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """The migrations directory and the database's record disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    """Migration files of `directory` in version order; a stray or duplicate name is an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        if m.group(1) in found:
            raise MigrationError(f"{path.name}: version {m.group(1)} is used twice")
        found[m.group(1)] = Migration(m.group(1), path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(conn: asyncpg.Connection, directory: Path) -> list[str]:
    """Apply pending migrations; answer the names applied. Refuses if an applied file changed."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        for version, row in applied.items():
            match = next((m for m in migrations if m.version == version), None)
            if match is None:
                raise MigrationError(f"applied migration {row['name']} is missing from {directory}")
            if match.checksum != row["checksum"]:
                raise MigrationError(
                    f"applied migration {row['name']} has changed since it was applied; "
                    "write a new migration instead of editing an applied one"
                )
        done: list[str] = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            log.info("applied migration %s", m.name)
            done.append(m.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
