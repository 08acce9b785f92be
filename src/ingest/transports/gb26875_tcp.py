"""GB/T 26875.3 TCP listener (CONTRACT §4): user information transmission devices connect here.

Each connection is read frame by frame. A valid `send` frame is mapped to readings, handed to
`submit` (awaiting it is the backpressure: nothing more is read from that device meanwhile) and
only then confirmed. A frame failing its checksum, length or end marker (or carrying application
data that does not decode) is dead-lettered and denied. Sessions are keyed by device address;
the centre's own requests (read status, sync clock, duty check 查岗) are matched by serial.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875 import (
    BadFrame,
    Command,
    Frame,
    FrameReassembler,
    encode_frame,
    map_frame,
    peek_header,
    reply,
)
from ingest.codecs.gb26875_appdata import SYNC_CLOCK, decode_app_data, encode_time, request_command, request_data

log = logging.getLogger(__name__)

Submit = Callable[[list[Reading]], Awaitable[None]]
DeadLetter = Callable[[bytes, str, str], Awaitable[None]]
DEFAULT_VERSION = (1, 0)
READ_SIZE = 65536


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


class _Connection:
    """One TCP connection: where to write, who is at the other end, which devices it carries."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        host, port = writer.get_extra_info("peername")[:2]
        self.peer = f"tcp:{host}:{port}"
        self.addresses: set[int] = set()

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

    def allocate_serial(self) -> int:
        while (serial := self.next_serial) in self.pending:
            self.next_serial = (serial + 1) & 0xFFFF
        self.next_serial = (serial + 1) & 0xFFFF
        return serial


class GB26875Server:
    """The listener. `under_test` holds device addresses whose fire bits mean a test."""

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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.submit = submit
        self.dead_letter = dead_letter
        self.host = host
        self._port = port
        self.tz = ZoneInfo(tz)
        self.idle_timeout_s = idle_timeout_s
        self.partial_timeout_s = partial_timeout_s
        self.under_test: set[int] = set(under_test)
        self.clock = clock
        self.counters = Counters()
        self.sessions: dict[int, Session] = {}
        self.statuses: dict[int, dict[str, int]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
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
        frame = Frame(serial, session.version, self._local_now(), session.centre, address, request_command(app_type), data)
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
        self._handlers.add(task)
        conn = _Connection(writer)
        self.counters.connections += 1
        try:
            await self._read_frames(reader, conn)
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

    async def _read_frames(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        frames = FrameReassembler()
        while True:
            mid_frame = frames.pending > 0
            try:
                timeout = min(self.partial_timeout_s, self.idle_timeout_s) if mid_frame else self.idle_timeout_s
                chunk = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
            except TimeoutError:
                if not mid_frame:
                    self.counters.idle_closed += 1
                    log.info("GB/T 26875 %s idle for %g s, closing", conn.peer, self.idle_timeout_s)
                    return
                items = frames.flush()
            else:
                if not chunk:
                    return
                items = frames.feed(chunk)
            self.counters.skipped_bytes += frames.skipped
            frames.skipped = 0
            for item in items:
                if isinstance(item, BadFrame):
                    self.counters.frames_bad += 1
                    await self._reject(conn, item.raw, item.reason)
                else:
                    await self._on_frame(conn, item)

    def _drop(self, conn: _Connection) -> None:
        for address in conn.addresses:
            session = self.sessions.get(address)
            if session is not None and session.conn is conn:
                del self.sessions[address]
                for waiter in session.pending.values():
                    if not waiter.done():
                        waiter.set_exception(SessionClosed(address))

    def _session(self, conn: _Connection, frame: Frame) -> Session:
        session = self.sessions.get(frame.source)
        if session is None or session.conn is not conn:
            if session is not None:  # the device reconnected; its old connection is stale
                log.info("GB/T 26875 device %d moved from %s to %s", frame.source, session.conn.peer, conn.peer)
                session.conn.writer.close()
            statuses = self.statuses.setdefault(frame.source, {})
            session = self.sessions[frame.source] = Session(frame.source, conn, statuses)
            conn.addresses.add(frame.source)
            self.counters.sessions_opened += 1
        session.centre = frame.dest
        session.version = frame.version
        return session

    # --- frames ------------------------------------------------------------------------------

    async def _on_frame(self, conn: _Connection, frame: Frame) -> None:
        self.counters.frames_ok += 1
        session = self._session(conn, frame)
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

    async def _reject(self, conn: _Connection, raw: bytes, reason: str) -> None:
        """Dead-letter a frame and deny it when its control unit can be read."""
        await self.dead_letter(raw, conn.peer, reason)
        self.counters.dead_letters += 1
        header = peek_header(raw)
        if header is not None:
            await conn.send(reply(header, Command.deny, self._local_now()))
            self.counters.denied += 1

    def _local_now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock()), self.tz).replace(tzinfo=None)
