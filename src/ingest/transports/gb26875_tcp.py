"""GB/T 26875.3 TCP listener (CONTRACT §4): user information transmission devices connect here.

Each connection is read frame by frame. A valid `send` frame is mapped to readings, handed to
`submit` (awaiting it is the backpressure: nothing more is read from that device meanwhile) and
only then confirmed. A frame failing its checksum, length or end marker (or carrying application
data that does not decode) is dead-lettered and denied. Sessions are keyed by device address;
the centre's own requests (read status, sync clock, duty check 查岗) are matched by serial.

Hardening (docs/gb26875.md, "Hardening"): peers outside `allow_peers`, connections over the
global cap, and those of an address that already has `max_presession_per_peer` connections without
a session are closed at accept; a connection must send a valid frame within
`presession_timeout_s`, and a started frame must complete within `frame_deadline_s`; garbage is
dead-lettered once per burst and never denied; a live session is taken over only from its own
peer address or once it has been silent for `takeover_silence_s`, and every takeover, accepted
or refused, is submitted as a `tamper` reading of the device.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875 import (
    BadFrame,
    Command,
    Frame,
    encode_frame,
    map_frame,
    peek_header,
    reply,
)
from ingest.codecs.gb26875_appdata import (
    REQUEST_TYPES,
    SYNC_CLOCK,
    decode_app_data,
    encode_time,
    request_command,
    request_data,
)
from ingest.transports.gb26875_stream import FrameCutter, Garbage

log = logging.getLogger(__name__)

Submit = Callable[[list[Reading]], Awaitable[None]]
DeadLetter = Callable[[bytes, str, str], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_VERSION = (1, 0)
READ_SIZE = 65536
#: A connection whose garbage burst grows past this many bytes is closed (its dead letter kept).
GARBAGE_LIMIT = 65536
#: One takeover `tamper` reading per device and outcome within this many seconds; all are counted.
TAKEOVER_REPORT_INTERVAL_S = 60.0


class RequestError(Exception):
    """A centre-initiated request did not get its answer."""


class NotConnected(RequestError):
    def __init__(self, address: int) -> None:
        super().__init__(f"device {address} has no open GB/T 26875 session")
        self.address = address


class SessionClosed(RequestError):
    def __init__(self, address: int) -> None:
        super().__init__(f"the session of device {address} closed before it answered")
        self.address = address


class BadAnswer(RequestError):
    def __init__(self, address: int, app_type: int, serial: int, problem: str) -> None:
        super().__init__(f"device {address} answered type {app_type} (serial {serial}) with {problem}")
        self.address = address
        self.app_type = app_type
        self.serial = serial
        self.problem = problem


class RequestTimeout(RequestError):
    def __init__(self, address: int, app_type: int, serial: int, attempts: int, timeout_s: float, denials: int) -> None:
        super().__init__(
            f"device {address} did not answer type {app_type} (serial {serial}) in {timeout_s:g} s "
            f"after {attempts} attempts ({denials} denied)"
        )
        self.address = address
        self.app_type = app_type
        self.serial = serial
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.denials = denials


@dataclass
class Counters:
    """Plain counters for the metrics exporter."""

    connections: int = 0
    sessions_opened: int = 0
    frames_ok: int = 0
    frames_bad: int = 0  # failed checksum, length or end marker
    confirmed: int = 0
    denied: int = 0
    dead_letters: int = 0
    heartbeats: int = 0
    readings: int = 0
    unmatched_answers: int = 0
    idle_closed: int = 0
    requests: int = 0
    request_failures: int = 0
    skipped_bytes: int = 0
    garbage_bursts: int = 0  # dead letters of bytes that belong to no frame (never denied)
    garbage_closed: int = 0  # connections closed for a garbage burst over GARBAGE_LIMIT
    refused_not_allowed: int = 0  # closed at accept: peer outside allow_peers
    refused_peer_cap: int = 0  # closed at accept: max_presession_per_peer from that address
    refused_cap: int = 0  # closed at accept: max_connections in all
    presession_closed: int = 0  # no valid frame within presession_timeout_s
    frame_deadline_closed: int = 0  # a frame not completed within frame_deadline_s
    takeovers_accepted: int = 0
    takeovers_refused: int = 0


class _Hangup(Exception):
    """End this connection; the message says why (logged)."""


class _Connection:
    """One TCP connection: where to write, who is at the other end, which devices it carries."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        self.ip = peer_address(host)
        self.host: str = host if self.ip is None else str(self.ip)  # the peer's address, normalised
        self.peer = f"tcp:{host}:{port}"
        self.addresses: set[int] = set()
        self.opened_at = time.monotonic()

    async def send(self, frame: Frame) -> None:
        self.writer.write(encode_frame(frame))
        await self.writer.drain()


@dataclass(eq=False)
class Session:
    """One device address: its connection, the centre address and version it uses, its status
    words (remembered across reconnects), and the centre's requests waiting for an answer."""

    address: int
    conn: _Connection
    statuses: dict[str, int]
    centre: int = 0
    version: tuple[int, int] = DEFAULT_VERSION
    pending: dict[int, asyncio.Future[Frame]] = field(default_factory=dict)
    next_serial: int = 0
    heard_at: float = field(default_factory=time.monotonic)  # the last valid frame (monotonic s)

    def allocate_serial(self) -> int:
        while (serial := self.next_serial) in self.pending:
            self.next_serial = (serial + 1) & 0xFFFF
        self.next_serial = (serial + 1) & 0xFFFF
        return serial


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's IP address (an IPv4-mapped IPv6 one as IPv4), or None when `host` is not one."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def answer_problem(app_type: int, answer: Frame) -> str | None:
    """What is wrong with a device's (non-deny) answer to a centre request of `app_type`, or None:
    a read (61-68, 81-88) needs application data of the matching upstream type (type - 60)."""
    if not answer.data:
        return "no application data" if app_type in REQUEST_TYPES else None
    try:
        app = decode_app_data(answer.data)
    except DecodeError as e:
        return f"application data that does not decode ({e.reason})"
    if app_type in REQUEST_TYPES and app.app_type != app_type - 60:
        return f"application data of type {app.app_type} instead of {app_type - 60}"
    return None


class GB26875Server:
    """The listener. `under_test` holds device addresses whose fire bits mean a test.

    `allow_peers` (CIDRs; empty: anyone), `max_connections` (in all) and `max_presession_per_peer`
    (connections of one IP address that have not opened a session yet; devices behind one NAT
    share an address, so sessions count against `max_connections` only) are checked at accept;
    `presession_timeout_s` bounds the wait for a connection's first valid frame,
    `frame_deadline_s` the time a started frame may take, `partial_timeout_s` the silence in the
    middle of one; `takeover_silence_s` is how long a live session must have been silent before
    another peer address may take it over (2.5 x the 90 s uitd heartbeat, as for offline)."""

    def __init__(
        self,
        submit: Submit,
        dead_letter: DeadLetter,
        *,
        host: str = "0.0.0.0",
        port: int = 9026,
        tz: str = "Asia/Shanghai",
        idle_timeout_s: float = 300.0,
        under_test: Collection[int] = (),
        partial_timeout_s: float = 5.0,
        frame_deadline_s: float = 10.0,
        presession_timeout_s: float = 20.0,
        takeover_silence_s: float = 225.0,
        max_connections: int = 1024,
        max_presession_per_peer: int = 8,
        allow_peers: Iterable[str | Network] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.submit = submit
        self.dead_letter = dead_letter
        self.host = host
        self._port = port
        self.tz = ZoneInfo(tz)
        self.idle_timeout_s = idle_timeout_s
        self.partial_timeout_s = partial_timeout_s
        self.frame_deadline_s = frame_deadline_s
        self.presession_timeout_s = presession_timeout_s
        self.takeover_silence_s = takeover_silence_s
        self.max_connections = max_connections
        self.max_presession_per_peer = max_presession_per_peer
        self.allow_peers: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_peers)
        self.under_test: set[int] = set(under_test)
        self.clock = clock
        self.counters = Counters()
        self.sessions: dict[int, Session] = {}
        self.statuses: dict[int, dict[str, int]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._presession: Counter[str] = Counter()  # connections without a session, per peer IP address
        self._takeover_reported: dict[tuple[int, bool], float] = {}
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._port, reuse_address=True)
        log.info("GB/T 26875 listener on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening and end every connection (pending requests fail with SessionClosed)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- centre-initiated requests -----------------------------------------------------------

    async def request(
        self, address: int, app_type: int, objects: bytes = b"", timeout: float = 10.0, retries: int = 3
    ) -> Frame:
        """Send a request (61-68, 81-88: answered by a response) or control command (89 init,
        90 clock sync, 91 duty check: answered by a confirm) and return the device's answer.

        The same frame (same serial) is resent up to `retries` times within `timeout` seconds in
        all, each attempt waiting `timeout / (retries + 1)`; a deny counts as a failed attempt.
        A clock sync without objects sends the current time in the device's zone."""
        session = self.sessions.get(address)
        if session is None:
            raise NotConnected(address)
        if app_type == SYNC_CLOCK and not objects:
            objects = encode_time(self._local_now())
        data = request_data(app_type, objects)
        serial = session.allocate_serial()
        frame = Frame(
            serial, session.version, self._local_now(), session.centre, address, request_command(app_type), data
        )
        self.counters.requests += 1
        denials = 0
        try:
            for _ in range(retries + 1):
                answer: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
                session.pending[serial] = answer
                if session.conn.writer.is_closing():
                    raise SessionClosed(address)
                await session.conn.send(frame)
                try:
                    result = await asyncio.wait_for(answer, timeout / (retries + 1))
                except TimeoutError:
                    continue
                if result.command == Command.deny:
                    denials += 1
                    continue
                problem = answer_problem(app_type, result)
                if problem is not None:
                    raise BadAnswer(address, app_type, serial, problem)
                return result
            raise RequestTimeout(address, app_type, serial, retries + 1, timeout, denials)
        except (RequestError, ConnectionError):
            self.counters.request_failures += 1
            raise
        finally:
            session.pending.pop(serial, None)

    # --- connections -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(writer)
        self.counters.connections += 1
        if not self._admit(conn):
            writer.close()
            return
        self._handlers.add(task)
        self._presession[conn.host] += 1
        try:
            await self._read_frames(reader, conn)
        except _Hangup as e:
            log.info("GB/T 26875 %s: %s, closing", conn.peer, e)
        except (ConnectionError, OSError) as e:
            log.info("GB/T 26875 %s: %s", conn.peer, e)
        except asyncio.CancelledError:
            # Only close() cancels a connection: end normally, since Python 3.11's stream callback
            # calls exception() on its task and would report a cancelled one as an error.
            if not self._closing:
                raise
        finally:
            self._drop(conn)
            writer.close()
            self._handlers.discard(task)
            if not conn.addresses:
                self._identified(conn)

    def _admit(self, conn: _Connection) -> bool:
        """The allow-list and the connection caps, checked before anything is read."""
        ip, host = conn.ip, conn.host
        if self.allow_peers and (ip is None or not any(ip.version == n.version and ip in n for n in self.allow_peers)):
            self.counters.refused_not_allowed += 1
            log.debug("GB/T 26875 %s is outside the allowed peers, closing", conn.peer)
            return False
        if len(self._handlers) >= self.max_connections:
            self.counters.refused_cap += 1
            log.debug("GB/T 26875 %s: %d connections open already, closing", conn.peer, len(self._handlers))
            return False
        if self._presession[host] >= self.max_presession_per_peer:
            self.counters.refused_peer_cap += 1
            log.debug("GB/T 26875 %s: %d connections from its address without a session, closing", conn.peer,
                      self._presession[host])
            return False
        return True

    def _identified(self, conn: _Connection) -> None:
        """The connection no longer counts as one without a session (it opened one, or ended)."""
        self._presession[conn.host] -= 1
        if not self._presession[conn.host]:
            del self._presession[conn.host]

    async def _read_frames(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        """Read until the peer leaves, is idle too long, or breaks one of the limits (`_Hangup`)."""
        cutter = FrameCutter()
        frame_start: tuple[int, float] | None = None  # the partial frame's stream offset, and when it began
        while True:
            now = time.monotonic()
            if not cutter.pending:
                frame_start = None
            elif frame_start is None or frame_start[0] != cutter.offset:
                frame_start = (cutter.offset, now)
            limits = [(now + self.idle_timeout_s, "idle")]
            if not conn.addresses:
                limits.append((conn.opened_at + self.presession_timeout_s, "presession"))
            if frame_start is not None:
                limits.append((frame_start[1] + self.frame_deadline_s, "deadline"))
                limits.append((now + self.partial_timeout_s, "stall"))
            at, limit = min(limits)
            try:
                chunk = await asyncio.wait_for(reader.read(READ_SIZE), max(at - now, 0))
            except TimeoutError:
                if limit == "stall":
                    await self._handle(conn, cutter, cutter.flush())
                    continue
                await self._give_up(conn, cutter, limit)
                return
            if not chunk:
                await self._handle(conn, cutter, cutter.flush(), deny=False)
                return
            await self._handle(conn, cutter, cutter.feed(chunk))
            if cutter.burst > GARBAGE_LIMIT:
                self.counters.garbage_closed += 1
                await self._handle(conn, cutter, cutter.flush(), deny=False)
                raise _Hangup(f"more than {GARBAGE_LIMIT} bytes that belong to no frame")

    async def _give_up(self, conn: _Connection, cutter: FrameCutter, limit: str) -> None:
        """A time limit passed: record what is held back and end the connection."""
        if limit == "deadline":
            self.counters.frame_deadline_closed += 1
            held, garbage = cutter.abandon()
            await self._handle(conn, cutter, [garbage] if garbage else [])
            await self._dead(held, conn.peer, f"frame not completed within {self.frame_deadline_s:g} s "
                             f"({len(held)} bytes received); connection closed")
        await self._handle(conn, cutter, cutter.flush(), deny=False)
        if limit == "idle":
            self.counters.idle_closed += 1
            raise _Hangup(f"idle for {self.idle_timeout_s:g} s")
        if limit == "presession":
            self.counters.presession_closed += 1
            raise _Hangup(f"no valid frame within {self.presession_timeout_s:g} s")
        raise _Hangup(f"a frame not completed within {self.frame_deadline_s:g} s")

    async def _handle(self, conn: _Connection, cutter: FrameCutter, items: list[Frame | BadFrame | Garbage],
                      *, deny: bool = True) -> None:
        self.counters.skipped_bytes += cutter.skipped
        cutter.skipped = 0
        for item in items:
            if isinstance(item, Garbage):
                self.counters.garbage_bursts += 1
                kept = "" if len(item.head) == item.size else f", the first {len(item.head)} kept"
                await self._dead(item.head, conn.peer, f"{item.size} bytes that belong to no frame{kept}")
            elif isinstance(item, BadFrame):
                self.counters.frames_bad += 1
                await self._reject(conn, item.raw, item.reason, deny=deny)
            else:
                await self._on_frame(conn, item)

    def _drop(self, conn: _Connection) -> None:
        for address in conn.addresses:
            session = self.sessions.get(address)
            if session is not None and session.conn is conn:
                del self.sessions[address]
                _fail_pending(session)

    async def _session(self, conn: _Connection, frame: Frame) -> Session:
        """The frame's device session, opened (or taken over) on this connection if need be."""
        session = self.sessions.get(frame.source)
        if session is None or session.conn is not conn:
            if session is not None and not session.conn.writer.is_closing():
                await self._take_over(conn, frame, session)
            statuses = self.statuses.setdefault(frame.source, {})
            session = self.sessions[frame.source] = Session(frame.source, conn, statuses)
            if not conn.addresses:
                self._identified(conn)
            conn.addresses.add(frame.source)
            self.counters.sessions_opened += 1
        session.centre = frame.dest
        session.version = frame.version
        session.heard_at = time.monotonic()
        return session

    async def _take_over(self, conn: _Connection, frame: Frame, old: Session) -> None:
        """Another connection claims a device with a live session. Accepted when it comes from the
        same peer address (the device reconnected before its old connection timed out) or the old
        one has been silent for `takeover_silence_s`: the old connection is closed. Otherwise the
        new connection is refused (its frame dead-lettered, `_Hangup`). Either way the device gets a
        `tamper` reading saying so."""
        silent_s = time.monotonic() - old.heard_at
        accepted = conn.host == old.conn.host or silent_s >= self.takeover_silence_s
        outcome = "accepted" if accepted else "refused"
        log.warning("GB/T 26875 device %d: takeover by %s %s (session on %s, silent %.1f s)",
                    frame.source, conn.peer, outcome, old.conn.peer, silent_s)
        if accepted:
            self.counters.takeovers_accepted += 1
            old.conn.writer.close()
            _fail_pending(old)
        else:
            self.counters.takeovers_refused += 1
            await self._dead(frame.raw, conn.peer, f"device {frame.source} has a live session from {old.conn.peer}: "
                             "takeover refused, connection closed")
        await self._report_takeover(frame.source, accepted, {
            "takeover": outcome, "peer": conn.peer, "session_peer": old.conn.peer, "silent_s": round(silent_s, 1),
        })
        if not accepted:
            raise _Hangup(f"takeover of device {frame.source} refused (live session from {old.conn.peer})")

    async def _report_takeover(self, address: int, accepted: bool, extra: dict[str, object]) -> None:
        """Submit a `tamper` reading for the device, at most one per outcome every
        TAKEOVER_REPORT_INTERVAL_S (a reconnect storm must not flood the pipeline)."""
        now = time.monotonic()
        last = self._takeover_reported.get((address, accepted))
        if last is not None and now - last < TAKEOVER_REPORT_INTERVAL_S:
            return
        self._takeover_reported[(address, accepted)] = now
        received_ms = int(self.clock() * 1000)
        await self.submit([Reading(f"uitd-{address}", Kind.uitd, Event.tamper, received_ms, received_ms, extra=extra,
                                   untimed=True)])
        self.counters.readings += 1

    # --- frames ------------------------------------------------------------------------------

    async def _on_frame(self, conn: _Connection, frame: Frame) -> None:
        self.counters.frames_ok += 1
        session = await self._session(conn, frame)
        if frame.command == Command.send:
            if await self._take(session, frame):
                await conn.send(reply(frame, Command.confirm, self._local_now()))
                self.counters.confirmed += 1
        elif frame.command in (Command.confirm, Command.response, Command.deny):
            waiter = session.pending.get(frame.serial)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            else:
                self.counters.unmatched_answers += 1
            if frame.command == Command.response and frame.data:
                await self._take(session, frame)
        else:
            await self._reject(conn, frame.raw, f"command {frame.command} is not one a device sends to the centre")

    async def _take(self, session: Session, frame: Frame) -> bool:
        """Map a frame's data to readings and hand them over; False when it was rejected."""
        received_ms = int(self.clock() * 1000)
        try:
            app = decode_app_data(frame.data) if frame.data else None
        except DecodeError as e:
            await self._reject(session.conn, frame.raw, f"application data: {e.reason}")
            return False
        readings, statuses = map_frame(
            frame, app, received_ms=received_ms, tz=self.tz, under_test=frame.source in self.under_test,
            previous=session.statuses,
        )
        if readings:
            await self.submit(readings)
            self.counters.readings += len(readings)
        session.statuses.clear()
        session.statuses.update(statuses)
        if app is None:
            self.counters.heartbeats += 1
        return True

    async def _dead(self, raw: bytes, peer: str, reason: str) -> None:
        await self.dead_letter(raw, peer, reason)
        self.counters.dead_letters += 1

    async def _reject(self, conn: _Connection, raw: bytes, reason: str, *, deny: bool = True) -> None:
        """Dead-letter a frame and deny it when its control unit can be read (and `deny`)."""
        await self._dead(raw, conn.peer, reason)
        header = peek_header(raw) if deny else None
        if header is not None:
            await conn.send(reply(header, Command.deny, self._local_now()))
            self.counters.denied += 1

    def _local_now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock()), self.tz).replace(tzinfo=None)


def _fail_pending(session: Session) -> None:
    """The session's connection is gone: its requests waiting for an answer fail."""
    for waiter in session.pending.values():
        if not waiter.done():
            waiter.set_exception(SessionClosed(session.address))
