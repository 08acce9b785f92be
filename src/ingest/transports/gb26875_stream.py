"""Cutting one GB/T 26875.3 connection's byte stream into frames, hardened for the listener. Pure.

Unlike the codec's `FrameReassembler`, what is not a frame is reported in bursts: a run of bytes
that belongs to no frame (noise, a port scan, a flood of `@`) becomes one `Garbage` item however
long it is, so the listener records one dead letter for it and denies nothing. A `@@` starts a
frame only when its command byte is one the standard defines (1-6, or 128-255 user-defined);
otherwise it is a false start and its first byte joins the garbage, so a stray `@@` never holds
back the frames behind it. A well-delimited frame (`##` where its length says) that fails its
checksum is a `BadFrame` (the listener denies it); so is one whose declared length exceeds 1024 or
whose `##` is missing, when it starts right where the previous frame ended (or the stream
starts). Amid garbage such a candidate is a false start, and after one `BadFrame` of that kind
the bytes up to the next well-delimited frame are garbage: denies never multiply with the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.codecs.gb26875 import (
    END,
    HEADER_LEN,
    MAX_DATA,
    MIN_FRAME,
    START,
    BadFrame,
    Command,
    Frame,
    decode_frame,
)

#: Bytes of a garbage burst kept for its dead letter; the burst's full size is always reported.
GARBAGE_HEAD = 2048
_COMMANDS = frozenset(int(c) for c in Command)


@dataclass(frozen=True, slots=True)
class Garbage:
    """A contiguous run of bytes that belongs to no frame: its first `GARBAGE_HEAD` bytes and its size."""

    head: bytes
    size: int


def plausible_command(command: int) -> bool:
    """A command byte the standard defines: 1-6, or 128-255 (user-defined)."""
    return command in _COMMANDS or command >= 128


class FrameCutter:
    """Cuts a byte stream into `Frame`s, `BadFrame`s and `Garbage` bursts; `feed` never raises.

    `offset` is the stream position of the first byte held back, so a caller can tell when the
    partial frame it is waiting for is a new one (it measures a deadline per frame). `burst` is the
    size of the garbage run still open: it is reported when a frame (good or bad) ends it, or by
    `flush`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.offset = 0
        self.skipped = 0  # bytes that belonged to no frame, in all
        self._head = bytearray()
        self.burst = 0
        self._reported_to = 0  # stream position up to which bytes are in a dead letter already
        self._clean = True  # at the stream's start or right after a well-delimited frame

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def abandon(self) -> tuple[bytes, Garbage | None]:
        """Drop the partial frame held back: its bytes, and the garbage burst open before it."""
        held = bytes(self._buf)
        self._consume(len(held))
        return held, self._end_burst() if self.burst else None

    def feed(self, data: bytes) -> list[Frame | BadFrame | Garbage]:
        self._buf += data
        out: list[Frame | BadFrame | Garbage] = []
        pos = 0
        while True:
            pos, item = self._next(pos)
            if item is None:
                break
            if self.burst:
                out.append(self._end_burst())
            out.append(item)
        self._consume(pos)
        return out

    def flush(self) -> list[Frame | BadFrame | Garbage]:
        """Give up waiting (the peer went quiet mid-frame, or left): the partial frame held back
        is reported once as truncated, with all its bytes, when it starts with `@@` where the
        previous frame ended (amid garbage it is garbage too); frames complete inside it are still
        cut out; the open garbage burst is reported."""
        out: list[Frame | BadFrame | Garbage] = []
        while self._buf:
            raw = bytes(self._buf)
            truncated = self._clean and raw.startswith(START)
            if truncated and self.offset >= self._reported_to:
                if self.burst:
                    out.append(self._end_burst())
                out.append(BadFrame(f"frame truncated after {len(raw)} bytes", raw))
                self._reported_to = self.offset + len(raw)
            else:
                self._skip(0, 1)
            self._consume(1)
            out.extend(self.feed(b""))
        if self.burst:
            out.append(self._end_burst())
        return out

    def _next(self, pos: int) -> tuple[int, Frame | BadFrame | None]:
        buf = self._buf
        while True:
            start = buf.find(START, pos)
            if start < 0:
                keep = 1 if buf.endswith(b"@") and len(buf) > pos else 0
                self._skip(pos, len(buf) - keep)
                return len(buf) - keep, None
            self._skip(pos, start)
            pos = start
            if len(buf) - pos < HEADER_LEN:
                return pos, None
            if not plausible_command(buf[pos + 26]):  # a false start: look for the next `@@`
                self._skip(pos, pos + 1)
                pos += 1
                continue
            n = int.from_bytes(buf[pos + 24 : pos + 26], "little")
            end = pos + MIN_FRAME + n
            if n <= MAX_DATA and len(buf) < end:
                return pos, None
            if n > MAX_DATA or buf[end - 2 : end] != END:
                if not self._clean:  # amid garbage: a false start, not a frame to deny
                    self._skip(pos, pos + 1)
                    pos += 1
                    continue
                if n > MAX_DATA:
                    return self._bad(pos, HEADER_LEN, f"declared data length {n} exceeds {MAX_DATA}")
                return self._bad(pos, end - pos, "no ## where the declared length says the frame ends")
            self._clean = True
            try:
                return end, decode_frame(bytes(buf[pos:end]))
            except BadFrame as e:
                return end, e

    def _bad(self, pos: int, size: int, reason: str) -> tuple[int, BadFrame]:
        """A candidate with a plausible control unit that does not delimit a frame: reported with
        its bytes; scanning resumes one byte after its `@@` (a corrupted length must not swallow the
        frames behind it), and the bytes it covers join no garbage burst."""
        self._reported_to = max(self._reported_to, self.offset + pos + size)
        self._clean = False
        return pos + 1, BadFrame(reason, bytes(self._buf[pos : pos + size]))

    def _skip(self, start: int, end: int) -> None:
        if end > start:
            self.skipped += end - start
            self._clean = False
        start = max(start, self._reported_to - self.offset)
        if end <= start:
            return
        room = GARBAGE_HEAD - len(self._head)
        if room > 0:
            self._head += self._buf[start : min(end, start + room)]
        self.burst += end - start

    def _end_burst(self) -> Garbage:
        garbage = Garbage(bytes(self._head), self.burst)
        self._head.clear()
        self.burst = 0
        return garbage

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self.offset += n
