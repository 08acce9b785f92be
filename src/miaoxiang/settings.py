"""Service settings from `MIAOXIANG_*` environment variables or a TOML file (CONTRACT §7)."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from devices.outbound import OutboundPolicy
from miaoxiang.map_tiles import TileSource

ENV_PREFIX = "MIAOXIANG_"


def _default_migrations_dir() -> Path:
    """The SQL migrations as the wheel ships them, `miaoxiang/migrations` (in a checkout, a link to
    the top-level `migrations/`); the top-level directory itself where the link is not one."""
    here = Path(__file__).resolve().parent
    packaged = here / "migrations"
    return packaged if packaged.is_dir() else here.parents[1] / "migrations"


DEFAULT_MIGRATIONS_DIR = _default_migrations_dir()


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one plain sentence naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str | None = Field(None, description="PostgreSQL URL; unset means an embedded pgserver in data_dir")
    mqtt_url: str | None = Field(
        None, description="mqtt://user:pass@host:1883 or mqtts://; unset means an embedded broker"
    )
    tenant: str = Field(
        "default", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Deployment tenant in every topic (`mx/v1/{tenant}/...`)",
    )
    topic_prefix: str = Field("mx/v1", description="Root of every topic; tests set a private one")
    mqtt_client_id: str = Field("miaoxiang", description="Base of the persistent session ids (`-evt`, `-tel` appended)")
    mqtt_share_group: str | None = Field(
        None, description="Subscribe through $share/<group>/ so several workers split the load"
    )
    mqtt_max_inflight: int = Field(
        1000, ge=10, le=65535,
        description="MQTT 5 Receive Maximum per session: messages handed over but not yet acknowledged",
    )
    mqtt_max_payload: int = Field(
        65_536, ge=1024, description="Largest MQTT message on `evt`, `tel` and `ack` topics; a larger one is "
        "dead-lettered (its first 4 KiB kept) and acknowledged",
    )
    mqtt_max_batch_payload: int = Field(
        1_048_576, ge=1024, description="Largest MQTT message on `batch` topics (a gateway's array of reports); "
        "a larger one is dead-lettered (its first 4 KiB kept) and acknowledged",
    )
    http_host: str = Field("127.0.0.1", description="HTTP listen address")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (API, console, /metrics); 0 picks a free port")
    gb26875_enabled: bool = Field(True, description="Run the GB/T 26875.3 TCP listener")
    gb26875_port: int = Field(9026, ge=0, le=65535, description="0 picks a free port (tests)")
    gb26875_host: str = Field("0.0.0.0", description="GB/T 26875.3 listen address")
    gb26875_under_test: list[int] = Field(
        default_factory=list, description="Transmission device addresses under test: their fire bits raise no fire"
    )
    duty_check_random_regions: list[str] = Field(
        default_factory=list,
        description="Regions given one random 查岗 a day each, of a transmission device picked at random (empty: off)",
    )
    gb26875_allow_peers: list[str] = Field(
        default_factory=list,
        description="GB/T 26875.3: peer networks allowed to connect (JSON list of CIDRs); empty allows every peer",
    )
    gb26875_max_connections: int = Field(
        1024, ge=1, description="GB/T 26875.3: open connections in all; more are closed at accept"
    )
    gb26875_max_presession_per_peer: int = Field(
        8, ge=1, description="GB/T 26875.3: connections from one peer IP address that have not sent a valid frame yet; "
        "more are closed at accept (devices behind one NAT share an address: sessions count in max_connections only)",
    )
    gb26875_presession_timeout_s: float = Field(
        20.0, gt=0, description="GB/T 26875.3: a connection sending no valid frame within this many seconds is closed"
    )
    gb26875_frame_deadline_s: float = Field(
        10.0, gt=0, description="GB/T 26875.3: a started frame must be complete within this many seconds, else the "
        "connection is closed (and the partial frame dead-lettered)",
    )
    gb26875_takeover_silence_s: float = Field(
        225.0, gt=0, description="GB/T 26875.3: another peer address may take over a device's live session only after "
        "it has been silent this long (2.5 x the 90 s uitd heartbeat); every takeover raises `tamper`",
    )
    device_tz: str = Field("Asia/Shanghai", description="Time zone of GB/T 26875 device clocks")
    admin_token: SecretStr | None = Field(None, description="The first admin token (Bearer); never logged")
    data_dir: Path = Field(Path(".miaoxiang"), description="Where the embedded PostgreSQL keeps its data")
    migrations_dir: Path = Field(DEFAULT_MIGRATIONS_DIR, description="Plain-SQL migrations applied at start, in order")
    profiles_dir: Path | None = Field(
        None, description="Extra device profiles (*.json) an operator adds without a release"
    )
    unknown_devices: Literal["quarantine", "reject"] = Field(
        "quarantine",
        description="Reports of unregistered devices: `quarantine` (auto-register, flagged) or `reject` (dead letter)",
    )
    quarantine_per_min: int = Field(
        100, ge=1, description="Unknown devices one origin (a push source, a gateway's batch topic, all single-device "
        "MQTT topics of a lane, the GB/T 26875 listener) may auto-register a minute; beyond, dead letters",
    )
    quarantine_max: int = Field(
        10_000, ge=0,
        description="Quarantined devices in all; an unknown device beyond is dead-lettered, not registered",
    )
    readings_retention_days: int = Field(400, ge=1, description="Daily readings partitions older than this are dropped")
    batch_max: int = Field(5000, ge=1, description="Most readings in one micro-batch")
    batch_ms: int = Field(20, ge=1, description="Longest wait to fill a telemetry micro-batch (alarms never wait)")
    queue_max: int = Field(200_000, ge=100, description="Readings held in memory while PostgreSQL is slow or down")
    dedupe_window_s: int = Field(
        600, ge=1,
        description="Redelivered reports within this window are recognised in memory (PostgreSQL dedupes beyond)",
    )
    clock_skew_tolerance_s: float = Field(
        300.0, ge=0,
        description="A device time further ahead of the receive time is replaced by the receive time and the "
        "reading and device are flagged `clock_skew`",
    )
    max_components_per_device: int = Field(
        4096, ge=1, description="Panel components (uitd) one device may have as detectors; beyond, dead letters",
    )
    push_max_bytes: int = Field(1_048_576, ge=1024, description="Largest HTTP push body (413 above)")
    push_unverified_per_min: int = Field(
        60, ge=1, description="HTTP push requests one client address may make a minute that fail the signature or "
        "token check or name no source (burst of as many); beyond, 429. They never spend a source's rate",
    )
    http_max_body_bytes: int = Field(
        262_144, ge=1024, description="Largest HTTP request body on routes without a cap of their own (413 above)"
    )
    http_import_max_bytes: int = Field(
        8_388_608, ge=1024, description="Largest bulk device import body (413 above, refused while it streams in)"
    )
    http_unit_max_bytes: int = Field(65_536, ge=1024, description="Largest unit registration body (413 above)")
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="A connection that has not sent a complete request head within this many seconds "
        "is answered 408 and closed",
    )
    http_body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive completely within this many seconds of its head, "
        "else 408",
    )
    sweep_interval_s: float = Field(5.0, gt=0, le=10, description="Offline sweep period (at most 10 s)")
    flood_alarms_per_s: float = Field(
        5.0, gt=0, description="A device with at least this many alarm decisions per second ...")
    flood_window_s: float = Field(
        10.0, gt=0, description="... for this long is marked flooding (docs/escalation.md)")
    checkpoint_interval_s: float = Field(
        30.0, gt=0,
        description="How often changed live state is written to `device_state`",
    )
    command_timeout_s: float = Field(60.0, gt=0, description="Default wait for a device's answer to a downlink command")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS (JSON list); none by default",
    )
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="CIDR networks or host names outbound calls may reach although not global (JSON list); "
        "none by default",
    )
    public_url: str | None = Field(
        None, description="Base of responder links in messages (`{url}/r/{token}`); without it messages go "
        "without a link",
    )
    map_tiles: str | None = Field(
        None, description="Console map tile URL template with {z} {x} {y} (optional {s}, {key}), e.g. 天地图, "
        "AMap or OSM; unset draws the map on a plain background and fetches no tiles",
    )
    map_tiles_key: str = Field("", description="Key put into the tile template's {key} (e.g. 天地图 tk)")
    map_tiles_attribution: str = Field("", description="Attribution shown on the map for the tile source")
    map_tiles_subdomains: str = Field("abc", description="Letters or digits the tile template's {s} takes")
    map_tiles_coords: Literal["wgs84", "gcj02"] = Field(
        "wgs84", description="Datum of the tiles: `wgs84` (天地图, OSM) or `gcj02` (AMap, Tencent); the service "
        "stores WGS-84 and shifts points for display",
    )
    language: Literal["zh", "en"] = Field("zh", description="Language of notification messages: `zh` or `en`")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    partitions: int = Field(1, ge=1, le=256, description="Correlation partitions; 1 = one process does everything")
    role: Literal["all", "worker", "api"] = Field(
        "all",
        description=(
            "With partitions > 1: `worker` (ingest + correlate one partition) or `api` (fleet state, sweeps, API)"
        ),
    )
    partition_index: int = Field(0, ge=0, description="The partition a `worker` correlates, 0..partitions-1")
    registry_refresh_s: float = Field(
        5.0, gt=0, description="How often a worker reloads devices and units changed elsewhere"
    )

    @field_validator("database_url")
    @classmethod
    def _pg_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return v

    @field_validator("outbound_allow")
    @classmethod
    def _outbound_allow(cls, v: list[str]) -> list[str]:
        OutboundPolicy.parse(v)  # raises ValueError naming an entry that is neither
        return v

    @field_validator("gb26875_allow_peers")
    @classmethod
    def _gb26875_allow_peers(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR network (e.g. 10.0.0.0/8)") from None
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v

    @model_validator(mode="after")
    def _scale_out(self) -> Settings:
        if self.partitions == 1 and self.role != "all":
            raise ValueError("role must be `all` when partitions is 1")
        if self.partitions > 1 and self.role == "all":
            raise ValueError("with partitions > 1 each process is a `worker` or the `api`")
        if self.role == "worker" and self.partition_index >= self.partitions:
            raise ValueError(f"partition_index must be below partitions ({self.partitions})")
        if self.partitions > 1 and self.mqtt_url is None:
            raise ValueError("scale-out needs a real broker with shared subscriptions: set mqtt_url")
        if self.role == "worker" and not self.mqtt_share_group:
            raise ValueError("workers must share the uplink: set mqtt_share_group")
        return self

    @model_validator(mode="after")
    def _map_tiles(self) -> Settings:
        self.tile_source()  # raises InvalidTiles (a ValueError) saying what the template lacks
        return self

    def tile_source(self) -> TileSource | None:
        """The console map's tile source; None without `map_tiles`."""
        if not self.map_tiles:
            return None
        return TileSource.parse(self.map_tiles, attribution=self.map_tiles_attribution, key=self.map_tiles_key,
                                subdomains=self.map_tiles_subdomains, coords=self.map_tiles_coords)

    def session_id(self) -> str:
        """Base of this process's MQTT session ids; workers of one deployment differ by partition."""
        base = f"{self.mqtt_client_id}-{self.tenant}"
        return {"all": base, "worker": f"{base}-w{self.partition_index}", "api": f"{base}-api"}[self.role]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (the TOML file) lose to the environment, as operators expect.
        return env_settings, init_settings

    def topic(self, *parts: str) -> str:
        return "/".join((self.topic_prefix, self.tenant, *parts))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning every validation problem into one `SettingsError` sentence."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"Config file {config_file} does not exist.") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"Config file {config_file} is not valid TOML: {e}.") from None
        values = values.get("miaoxiang", values)
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        if not err["loc"]:  # a check across settings (scale-out); its input would show every value
            raise SettingsError(f"Settings do not fit together: {err['msg'].removeprefix('Value error, ')}.") from None
        name = str(err["loc"][0])
        shown = "<secret>" if "token" in name or "url" in name else repr(err.get("input"))
        raise SettingsError(
            f"Setting {ENV_PREFIX}{name.upper()} (or `{name}` in the config file) is invalid:"
            f" {err['msg']} (got {shown})."
        ) from None
