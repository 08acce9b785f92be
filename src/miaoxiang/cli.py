"""`miaoxiang serve | migrate | demo | simulate | bench` (CONTRACT §7)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg

from miaoxiang.embedded import embedded_postgres_url, stop_embedded_postgres
from miaoxiang.migrate import MigrationError, migrate
from miaoxiang.settings import Settings, SettingsError, load_settings
from miaoxiang.shutdown import run_until_signal

log = logging.getLogger("miaoxiang")


#: Libraries whose INFO lines are per request or per internal state change: noise for operators.
QUIET_LOGGERS = ("httpx", "transitions", "amqtt", "pgserver")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().isEnabledFor(logging.INFO) and not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


async def _serve(settings: Settings) -> int:
    """Serve until stopped (exit 0) or until a background task fails (exit 1, for the supervisor)."""
    from miaoxiang.server import serving

    # no start-up deadline: loading a province's fleet may take a while on a busy host, and until
    # then /readyz answers 503 to whoever supervises the process
    async with serving(settings, ready_timeout=None) as (app, base):
        log.info("serving on %s (console at %s/)", base, base)
        while not app.state.server_task.done():
            if app.state.services.background_error is not None:
                log.error("stopping: a background task failed: %r", app.state.services.background_error)
                return 1
            await asyncio.sleep(0.5)
    return 0


def _until_stopped(command: Coroutine[Any, Any, int | None]) -> int:
    """Run `serve` or `demo` until it ends or SIGTERM/SIGINT stops it in order (exit 0, logged
    once); whatever happens, let go of the embedded PostgreSQL."""
    try:
        code, stopped_by = asyncio.run(run_until_signal(command, on_force=stop_embedded_postgres))
    finally:
        stop_embedded_postgres()
    if stopped_by is not None:
        log.info("stopped cleanly (%s)", stopped_by)
        return 0
    return code or 0


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Play a fleet against a running service; print the score table; 1 when an expectation missed."""
    from urllib.parse import urlsplit

    from simulators.score import all_met, format_table
    from simulators.session import COMMAND_REAL_S, Plan, Target, run_session, say, scenario_names

    token = args.token or (settings.admin_token.get_secret_value() if settings.admin_token else None)
    mqtt_url = args.mqtt_url or settings.mqtt_url
    if token is None or mqtt_url is None:
        print("miaoxiang: simulate needs --token (or MIAOXIANG_ADMIN_TOKEN) and --mqtt-url (or MIAOXIANG_MQTT_URL)",
              file=sys.stderr)
        return 2
    try:
        names = scenario_names(args.scenario)
    except ValueError as e:
        print(f"miaoxiang: {e}", file=sys.stderr)
        return 2
    if (args.amqp_url is None) != (args.amqp_config is None):
        print("miaoxiang: --amqp-url and --amqp-config go together", file=sys.stderr)
        return 2
    try:
        amqp_config = None if args.amqp_config is None else json.loads(args.amqp_config.read_text())
    except (OSError, ValueError) as e:
        print(f"miaoxiang: --amqp-config: {e}", file=sys.stderr)
        return 2
    host = urlsplit(args.url).hostname or "127.0.0.1"
    gb_port = settings.gb26875_port if args.gb26875_port is None else args.gb26875_port
    target = Target(args.url.rstrip("/"), token, mqtt_url, settings.topic(), (host, gb_port) if gb_port else None,
                    settings.device_tz, pulsar_url=args.pulsar_url, amqp_url=args.amqp_url, amqp_config=amqp_config)
    if args.compression != 1:
        say("the service runs on real time: offline, outage and 60 s upgrade checks hold only at --compression 1")
    plan = Plan(devices=args.devices, seed=args.seed, scenarios=names, rate=args.rate, compression=args.compression,
                background=not args.no_background, sweep_slack_s=settings.sweep_interval_s * args.compression,
                command_slack_s=COMMAND_REAL_S * (args.compression - 1))
    result = await run_session(target, plan)
    print(format_table(result.rows))
    return 0 if all_met(result.rows) and not result.unavailable else 1


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
    sim = sub.add_parser("simulate", help="play a simulated fleet and scenarios against a running service; score it")
    sim.add_argument("--devices", type=int, default=300, help="fleet size (every scenario needs 300 or more)")
    sim.add_argument("--scenario", action="append", default=[], help="scenario name, repeatable, or 'all' (default)")
    sim.add_argument("--rate", type=float, default=500.0, help="at most this many messages per second")
    sim.add_argument("--compression", type=float, default=1.0, help="scenario seconds per real second")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--url", default="http://127.0.0.1:8080", help="the service's base URL")
    sim.add_argument("--token", help="admin token (default MIAOXIANG_ADMIN_TOKEN)")
    sim.add_argument("--mqtt-url", help="broker the service listens to (default MIAOXIANG_MQTT_URL)")
    sim.add_argument("--gb26875-port", type=int,
                     help="GB/T 26875 port on the URL's host (default MIAOXIANG_GB26875_PORT; 0: none)")
    sim.add_argument("--no-background", action="store_true", help="scenario messages only, no routine telemetry")
    sim.add_argument("--pulsar-url", help="CTWing devices publish through this Pulsar broker (a ctwing_mq source "
                                          "the simulator creates) instead of HTTP push, e.g. pulsar://127.0.0.1:6650")
    sim.add_argument("--amqp-url", help="OneNET smoke detectors publish Huawei IoTDA reports into this AMQP 1.0 queue "
                                        "instead of HTTP push: amqp://user:password@host:5672/address (URL-quoted)")
    sim.add_argument("--amqp-config", type=Path, help="with --amqp-url: a JSON file, the config of the iotda_amqp "
                                                      "source the simulator creates for the service to consume it")
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
            return _until_stopped(_serve(settings))
        elif args.command == "migrate":
            applied = asyncio.run(_migrate(settings))
            print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        elif args.command == "demo":
            from miaoxiang.demo import run_demo

            return _until_stopped(run_demo(settings, devices=args.devices, seed=args.seed))
        elif args.command == "simulate":
            return asyncio.run(_simulate(settings, args))
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
