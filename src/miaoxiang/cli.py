"""`miaoxiang serve | migrate | demo | simulate | bench` (CONTRACT §7)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import asyncpg

from miaoxiang.embedded import embedded_postgres_url
from miaoxiang.migrate import MigrationError, migrate
from miaoxiang.settings import Settings, SettingsError, load_settings

log = logging.getLogger("miaoxiang")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _serve(settings: Settings) -> int:
    """Serve until stopped (exit 0) or until a background task fails (exit 1, for the supervisor)."""
    from miaoxiang.server import serving

    async with serving(settings) as (app, base):
        log.info("serving on %s (console at %s/)", base, base)
        while not app.state.server_task.done():
            if app.state.background_error is not None:
                log.error("stopping: a background task failed: %r", app.state.background_error)
                return 1
            await asyncio.sleep(0.5)
    return 0


async def _migrate(settings: Settings) -> list[str]:
    url = settings.database_url or await asyncio.to_thread(embedded_postgres_url, settings.data_dir)
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn, settings.migrations_dir)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="miaoxiang", description="秒响 fire-protection telemetry and alarm service")
    parser.add_argument("--config", type=Path, help="TOML settings file (MIAOXIANG_* variables override it)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    demo = sub.add_parser("demo", help="service + embedded services + simulated fleet + console")
    demo.add_argument("--devices", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    bench = sub.add_parser("bench", help="run benchmarks/*.py; write JSON and a Markdown report")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as e:
        print(f"miaoxiang: {e}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    try:
        if args.command == "serve":
            return asyncio.run(_serve(settings))
        elif args.command == "migrate":
            applied = asyncio.run(_migrate(settings))
            print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        elif args.command == "demo":
            from miaoxiang.demo import run_demo

            asyncio.run(run_demo(settings, devices=args.devices, seed=args.seed))
        elif args.command == "bench":
            from miaoxiang.bench import run_all

            return 1 if run_all(args.out) else 0
    except MigrationError as e:
        print(f"miaoxiang: migrations refused: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
