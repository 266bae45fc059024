"""What the upload server reads from a request: form bodies, queries, Host names, and reads
with deadlines; every refusal is a `RequestError` with its HTTP status.
"""

from __future__ import annotations

import email.message
import io
import math
import socket
import time
import urllib.parse


# The seconds a refused (503) client is told to wait.
RETRY_AFTER_S = 2
# Query parameters of POST /api/colorize and their allowed values (None: checked elsewhere).
QUERY = {"format": ("json", "png"), "num_samples": None, "temperature": None}
# ... and of POST /api/colorize_video.
VIDEO_QUERY = {"stabilize": None}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class RequestError(Exception):
    """An answer to a bad request: HTTP status, a message for people, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def busy(message: str) -> RequestError:
    return RequestError(503, f"{message}; retry in {RETRY_AFTER_S} s",
                        {"Retry-After": str(RETRY_AFTER_S)})


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """`multipart/form-data` body -> {field name: (file name or None, bytes)}."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not boundary:
        raise RequestError(400, "multipart/form-data without a boundary")
    delimiter = b"--" + str(boundary).encode("latin-1")
    fields = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, "malformed multipart/form-data body")
        part = email.message.Message()
        for line in head.decode("utf-8", "replace").strip("\r\n").split("\r\n"):
            key, _, value = line.partition(":")
            part[key.strip()] = value.strip()
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        fields[str(name)] = (part.get_filename(), content)
    return fields


def parse_query(query: str, allowed_params: dict | None = None) -> dict[str, str]:
    """The query of POST /api/colorize (or, with `allowed_params=VIDEO_QUERY`, of
    /api/colorize_video) -> {name: value}; anything unknown is a 400 (a typo such as
    ``?fromat=png`` or ``?format=exe`` would otherwise be silently ignored)."""
    known = QUERY if allowed_params is None else allowed_params
    try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RequestError(400, f"malformed query string {query!r}") from None
    for name, values in params.items():
        if name not in known:
            raise RequestError(400, f"unknown query parameter {name!r}; allowed: "
                                    f"{', '.join(known)}")
        if len(values) > 1:
            raise RequestError(400, f"query parameter {name!r} is given {len(values)} times")
        allowed = known[name]
        if allowed is not None and values[0] not in allowed:
            raise RequestError(400, f"{name}={values[0]!r} is not allowed; allowed: "
                                    f"{', '.join(allowed)}")
    return {name: values[0] for name, values in params.items()}


def host_name(value: str | None) -> str | None:
    """The name in a Host header or an Origin's authority, lower case, without the port or
    IPv6 brackets; None when absent or malformed."""
    if not value:
        return None
    try:
        url = urllib.parse.urlsplit("//" + value.strip())
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if url.username is not None or url.path or url.query or not url.hostname:
        return None
    return url.hostname.rstrip(".")


class TooSlow(TimeoutError):
    """A body that arrives under the minimum rate (after its grace period)."""


class DeadlineReader(io.RawIOBase):
    """Socket reads that wait at most `idle` seconds each and end at `deadline` (a
    monotonic time): a client that stalls loses the connection instead of holding a thread
    for ever. Once `expect_body(start)` is called, the bytes received since `start` must
    also keep up with `min_rate` bytes/s after `grace` seconds (by time t, at least
    min_rate * (t - start - grace) of them): a client that drips a declared 20 MB body a
    byte at a time is cut after the grace, not after the minutes its size would take."""

    def __init__(self, sock: socket.socket, idle: float, min_rate: float = 0.0,
                 grace: float = 0.0):
        self.sock, self.idle, self.deadline = sock, float(idle), math.inf
        self.min_rate, self.grace = float(min_rate), float(grace)
        self.rate_from: float | None = None  # None: no rate check (the request's headers)
        self.received = 0

    def readable(self) -> bool:
        return True

    def reset(self, deadline: float) -> None:
        """A new request: its headers must arrive by `deadline`; no rate check yet."""
        self.deadline, self.rate_from, self.received = deadline, None, 0

    def expect_body(self, start: float) -> None:
        """From now on, bytes counted since `start` (the request's start) must keep the rate."""
        self.rate_from, self.deadline = start, math.inf

    def _rate_left(self, now: float) -> float:
        """Seconds until the bytes received so far fall under the minimum rate."""
        if self.rate_from is None or self.min_rate <= 0:
            return math.inf
        return self.rate_from + self.grace + self.received / self.min_rate - now

    def _too_slow(self, now: float) -> TooSlow:
        seconds = now - self.rate_from
        return TooSlow(f"the body arrived at {self.received / max(seconds, 1e-9):,.0f} "
                       f"bytes/s over {seconds:.1f} s; the minimum is {self.min_rate:,.0f} "
                       f"bytes/s after {self.grace:g} s (--min_upload_rate, --upload_grace)")

    def readinto(self, buffer) -> int:
        now = time.monotonic()
        rate_left = self._rate_left(now)
        if rate_left <= 0:
            raise self._too_slow(now)
        left = self.deadline - now
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(min(self.idle, left, rate_left))
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            now = time.monotonic()
            if self._rate_left(now) <= 0:
                raise self._too_slow(now) from None
            raise
        self.received += n
        return n


def check_frame_size(w: int, h: int, max_pixels: int, max_side: int, what: str) -> None:
    """413 (naming the flag) for `what`'s w x h over --max_pixels or --max_side."""
    if w * h > max_pixels:
        raise RequestError(413, f"{what} is {w}x{h} = {w * h:,} pixels; the limit is "
                                f"{max_pixels:,} (--max_pixels)")
    if max(w, h) > max_side:
        raise RequestError(413, f"{what} is {w}x{h} pixels; the longest side allowed is "
                                f"{max_side:,} (--max_side)")
