"""A local web page for an exported colorizer: upload a photo, see gray and colour, download.

    python -m colorjax.serve --model=EXPORT_DIR [--host=127.0.0.1] [--port=8000]

Endpoints (standard library only: `http.server.ThreadingHTTPServer`, one thread a connection):

* ``GET /``               the page (single HTML file, inline JS).
* ``GET /api/info``       model name, whether it samples, the limits, as JSON.
* ``POST /api/colorize``  ``multipart/form-data`` with a file field ``image`` (and optional
  ``num_samples``), or the raw image bytes as the body. Query ``?num_samples=N`` and
  ``?format=json|png``: ``png`` answers with the first colorization as a PNG instead of JSON.
  JSON answer: ``{"width", "height", "gray": data-URL, "colors": [data-URL, ...], ...}``.

Bad requests get a JSON ``{"error": ...}`` with 400 (empty upload, corrupt image, bad
``num_samples``, unknown query parameter or value, a Host header not in ``--allowed_hosts``),
403 (a POST from another site's page: ``Origin`` is not this server), 408 (the request did not
arrive within ``--timeout``), 411 (no Content-Length), 413 (file over ``--max_upload_mb``,
more than ``--max_pixels`` pixels, a side over ``--max_side``), 415 (not an image) or 503 with
``Retry-After`` (more than ``--max_connections`` connections, or more than ``--max_concurrent``
photos in work and ``--max_waiting`` waiting); the server keeps serving.

Hardening, and why: every read has a deadline (a client that stalls, or sends a declared body
a byte at a time, cannot hold a thread); threads and photos in memory are capped (excess work
is refused with 503, never queued without end); pixels and the longest side are checked
from the header before anything is decoded (the Lab conversion works in stripes of whole
rows, so a 16,000,000 x 1 image would be one 16-megapixel stripe); the Host check stops DNS
rebinding and the Origin check stops other sites' pages from posting to the API.
"""

from __future__ import annotations

import argparse
import base64
import collections
import email.message
import errno
import html
import io
import json
import math
import socket
import sys
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colorjax.colorize import Colorizer
from colorjax.photos import Photo, gray_of, photo_from_pil, to_uint8

# Bodies up to this much over the limit are read and discarded before a 413, so the browser
# sees the answer instead of a reset connection; larger ones are refused unread.
_DRAIN_LIMIT = 64 << 20
# Multipart headers and boundaries around the file: allowed on top of --max_upload_mb.
_MULTIPART_SLACK = 64 << 10
# A body may take --timeout plus one second per this many bytes (a slow but honest link
# uploads 20 MB in about 3.5 minutes; a client dripping bytes is cut off).
_MIN_UPLOAD_RATE = 100_000
# Seconds a client has to take an answer (a big JSON answer to a slow client).
_WRITE_TIMEOUT_S = 60.0
# The seconds a refused (503) client is told to wait.
_RETRY_AFTER_S = 2
# A refused connection stays open this long after its 503 (half-closed), so the answer is
# read before the close; closing with the request unread would reset it away.
_LINGER_S = 1.0
_MAX_LINGERING = 256
# Photos of at most this many pixels have their own lane of --max_concurrent slots, so a
# small request never waits behind big ones (a 4000 x 4000 photo takes seconds).
_SMALL_PIXELS = 1 << 20
# Allowed image formats: the common photo formats PIL decodes itself (no EPS/PDF-like
# plugins that run external programs, no exotic parsers exposed to the network). JPEG
# includes MPO (phones' multi-picture JPEGs), which PIL opens through the JPEG plugin.
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
# Query parameters of POST /api/colorize and their allowed values (None: checked elsewhere).
QUERY = {"format": ("json", "png"), "num_samples": None}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class RequestError(Exception):
    """An answer to a bad request: HTTP status, a message for people, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def busy(message: str) -> RequestError:
    return RequestError(503, f"{message}; retry in {_RETRY_AFTER_S} s",
                        {"Retry-After": str(_RETRY_AFTER_S)})


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


def parse_query(query: str) -> dict[str, str]:
    """The query of POST /api/colorize -> {name: value}; anything unknown is a 400 (a typo
    such as ``?fromat=png`` or ``?format=exe`` would otherwise be silently ignored)."""
    try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RequestError(400, f"malformed query string {query!r}") from None
    for name, values in params.items():
        if name not in QUERY:
            raise RequestError(400, f"unknown query parameter {name!r}; allowed: "
                                    f"{', '.join(QUERY)}")
        if len(values) > 1:
            raise RequestError(400, f"query parameter {name!r} is given {len(values)} times")
        allowed = QUERY[name]
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


def png_data_url(rgb8: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb8)).decode("ascii")


def encode_png(rgb8: np.ndarray) -> bytes:
    """(H, W, 3) or, for gray (a third of the bytes), (H, W) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    im = Image.fromarray(rgb8)
    im.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


class Lane:
    """At most `slots` photos in work and `waiting` more waiting for a slot; any more are
    refused with 503 (a bounded queue: memory and waiting time stay bounded)."""

    def __init__(self, name: str, slots: int, waiting: int):
        self.name, self.slots, self.waiting = name, max(1, int(slots)), max(0, int(waiting))
        self._free = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._waiters = 0

    def acquire(self) -> None:
        if self._free.acquire(blocking=False):
            return
        with self._lock:
            if self._waiters >= self.waiting:
                raise busy(f"busy: {self.slots} {self.name} photo(s) in work and "
                           f"{self._waiters} waiting (--max_concurrent, --max_waiting)")
            self._waiters += 1
        try:
            self._free.acquire()
        finally:
            with self._lock:
                self._waiters -= 1

    def release(self) -> None:
        self._free.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class ColorizeService:
    """Decoding, limits and the model call, independent of HTTP (tested directly too)."""

    def __init__(self, colorizer: Colorizer, *, max_upload_mb: float = 20.0,
                 max_pixels: int = 16_000_000, max_side: int = 16384, max_samples: int = 8,
                 max_concurrent: int = 2, max_waiting: int = 8,
                 small_pixels: int = _SMALL_PIXELS):
        self.colorizer = colorizer
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        self.max_pixels = int(max_pixels)
        self.max_side = int(max_side)
        self.max_samples = max(1, int(max_samples)) if colorizer.samples else 1
        self.small_pixels = int(small_pixels)
        # Full-resolution Lab/RGB buffers of big photos are large: bound how many are live.
        self.big = Lane("big", max_concurrent, max_waiting)
        self.small = Lane("small", max_concurrent, max_waiting)

    def info(self) -> dict:
        c = self.colorizer
        return {"model": c.model_name, "step": c.metadata.get("step"), "size": c.size,
                "samples": c.samples, "max_samples": self.max_samples,
                "max_upload_mb": self.max_upload_bytes / (1 << 20),
                "max_pixels": self.max_pixels, "max_side": self.max_side}

    def num_samples(self, value) -> int:
        if value in (None, ""):
            return 1
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise RequestError(400, f"num_samples={value!r} is not an integer") from None
        if not 1 <= n <= self.max_samples:
            why = ("this model is deterministic: 1" if not self.colorizer.samples
                   else f"1 to {self.max_samples}")
            raise RequestError(400, f"num_samples={n} is not allowed; allowed: {why}")
        return n

    def open(self, data: bytes) -> Image.Image:
        """Bytes -> a PIL image not yet decoded, its header checked against the limits.

        Raises `RequestError` (400, 413, 415) and nothing else."""
        if not data:
            raise RequestError(400, "empty upload: choose an image file")
        if len(data) > self.max_upload_bytes:
            raise RequestError(413, self._too_big(len(data)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bombs are checked below; odd EXIF, palettes
                im = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = im.size
        except UnidentifiedImageError:
            raise RequestError(415, "not an image file PIL reads here: upload a "
                                    f"{', '.join(FORMATS)} photo") from None
        except Image.DecompressionBombError as e:
            raise RequestError(413, f"too many pixels: {e}") from None
        except Exception as e:  # noqa: BLE001 - a broken header of any kind
            raise RequestError(400, f"cannot read the image: {type(e).__name__}: {e}") from None
        self.check_size(w, h)
        return im

    def check_size(self, w: int, h: int) -> None:
        """413 for too many pixels or too long a side (memory grows with both), 400 for none."""
        if w * h > self.max_pixels:
            raise RequestError(413, f"the image has {w}x{h} = {w * h:,} pixels; the limit is "
                                    f"{self.max_pixels:,} (--max_pixels)")
        if max(w, h) > self.max_side:
            raise RequestError(413, f"the image is {w}x{h} pixels; the longest side allowed is "
                                    f"{self.max_side:,} (--max_side)")
        if w <= 0 or h <= 0:
            raise RequestError(400, "the image has no pixels")

    def load(self, im: Image.Image) -> Photo:
        """Decode an `open`ed image (EXIF orientation applied) -> Photo; 400 if damaged."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = ImageOps.exif_transpose(im)
                im.load()
                self.check_size(*im.size)  # a decoder that changed the size on load
                return photo_from_pil(im)
        except RequestError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated or damaged data
            raise RequestError(400, f"the image cannot be decoded (truncated or damaged?): "
                                    f"{type(e).__name__}: {e}") from None

    def decode(self, data: bytes) -> Photo:
        """Bytes -> Photo, enforcing the limits (pixels and sides checked before decoding).

        Raises `RequestError` (400, 413, 415) and nothing else."""
        return self.load(self.open(data))

    def _too_big(self, n: int) -> str:
        return (f"the upload is {n / (1 << 20):.1f} MiB; the limit is "
                f"{self.max_upload_bytes / (1 << 20):.1f} MiB (--max_upload_mb)")

    def lane(self, im: Image.Image) -> Lane:
        w, h = im.size
        return self.small if w * h <= self.small_pixels else self.big

    def colorize(self, data: bytes, num_samples: int = 1):
        """(photo, [sRGB float images]) for an uploaded file; 503 when its lane is full."""
        im = self.open(data)
        with self.lane(im):
            photo = self.load(im)
            return photo, self.colorizer.colorize_photos([photo], num_samples)[0]


class _DeadlineReader(io.RawIOBase):
    """Socket reads that wait at most `idle` seconds each and end at `deadline` (a
    monotonic time): a client that stalls, or drips a byte at a time, loses the connection
    instead of holding a thread for ever."""

    def __init__(self, sock: socket.socket, idle: float):
        self.sock, self.idle, self.deadline = sock, float(idle), math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(min(self.idle, left))
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    server_version = "colorjax"
    protocol_version = "HTTP/1.1"
    service: ColorizeService  # set on the subclass made by `bind_server`
    quiet = False
    timeout = 5.0  # --timeout: seconds for a request's headers, and for any silence
    allowed_hosts: frozenset[str] | None = frozenset(LOCAL_HOSTS)  # None: any Host

    # -- plumbing --

    def setup(self):
        super().setup()
        self.rfile.close()  # the plain socket file: reads go through the deadline instead
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self):
        # The request line and headers (or, between keep-alive requests, the next request)
        # must arrive within --timeout; a body gets more, see `_content_length`.
        self._started = time.monotonic()
        self._reader.deadline = self._started + self.timeout
        super().handle_one_request()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        self.connection.settimeout(_WRITE_TIMEOUT_S)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, extra: dict | None = None):
        self._send(status, json.dumps(obj).encode(), "application/json", extra)

    def _error(self, status: int, message: str, extra: dict | None = None):
        self._json(status, {"error": message, "status": status}, extra)

    def _check_host(self) -> None:
        """400 unless the Host header names this server: a page of another site that got
        its name to resolve to 127.0.0.1 (DNS rebinding) still sends its own name."""
        values = self.headers.get_all("Host") or []
        if len(values) > 1:  # which one would count? (RFC 9112: answer 400)
            raise RequestError(400, f"{len(values)} Host headers")
        value = values[0] if values else None
        if self.allowed_hosts is not None and host_name(value) not in self.allowed_hosts:
            raise RequestError(400, f"Host {value!r} is not a name this server answers to; "
                                    f"allowed: {', '.join(sorted(self.allowed_hosts))} "
                                    "(add names with --allowed_hosts)")

    def _check_origin(self) -> None:
        """403 for a POST that another site's page sent (browsers always say so in Origin);
        clients such as curl send no Origin and are let through."""
        origin = self.headers.get("Origin")
        if origin is None:
            return
        own = "http://" + (self.headers.get("Host") or "").strip().lower()
        if origin.strip().lower().rstrip("/") != own:
            raise RequestError(403, f"cross-origin request from {origin!r} refused: only this "
                                    f"server's own page ({own}) may post")

    # -- routes --

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        try:
            self._check_host()
        except RequestError as e:
            return self._error(e.status, e.message)
        if path in ("/", "/index.html"):
            self._send(200, render_page(self.service.info()).encode(), "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(200, self.service.info())
        elif path == "/api/colorize":
            self._error(405, "use POST with an image file")
        else:
            self._error(404, f"no page at {path}")

    do_HEAD = do_GET

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            self._check_host()
            self._check_origin()
            if url.path != "/api/colorize":
                raise RequestError(404, f"no endpoint at {url.path}")
            query = parse_query(url.query)
        except RequestError as e:
            self._drain_or_close()
            return self._error(e.status, e.message, e.headers)
        try:
            data, form = self._read_upload()
            n = self.service.num_samples(form.get("num_samples", query.get("num_samples")))
            photo, colors = self.service.colorize(data, n)
            if query.get("format") == "png":
                return self._send(200, encode_png(to_uint8(colors[0])), "image/png",
                                  {"Content-Disposition": 'attachment; filename="color.png"'})
            w, h = photo.size
            self._json(200, {
                "model": self.service.colorizer.model_name, "width": w, "height": h,
                "num_samples": n, "had_color": photo.truth is not None,
                "gray": png_data_url(gray_of(photo)),
                "colors": [png_data_url(to_uint8(c)) for c in colors],
            })
        except RequestError as e:
            self._error(e.status, e.message, e.headers)
        except Exception as e:  # noqa: BLE001 - never take the server down with a request
            self.log_error("internal error: %r", e)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _drain_or_close(self):
        """Read a body we will not use (keeps the connection usable), or drop the connection."""
        try:
            n = self._content_length(required=False) or 0
        except RequestError:
            return  # a bad Content-Length: the connection is closed after the answer
        if n > _DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            while n > 0:
                got = len(self.rfile.read(min(n, 1 << 20)))
                if not got:  # the client went away
                    break
                n -= got
        except (TimeoutError, OSError):
            self.close_connection = True

    def _content_length(self, required=True) -> int | None:
        """The declared body size; the body's read deadline grows with it."""
        value = self.headers.get("Content-Length")
        if value is None:
            if required:
                self.close_connection = True
                raise RequestError(411, "Content-Length is required")
            return None
        try:
            n = int(value)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {value!r}") from None
        self._reader.deadline = self._started + self.timeout + n / _MIN_UPLOAD_RATE
        return n

    def _read_upload(self) -> tuple[bytes, dict]:
        """The uploaded file's bytes and the other form fields."""
        n = self._content_length()
        limit = self.service.max_upload_bytes
        if n > limit + _MULTIPART_SLACK:
            self._drain_or_close()
            raise RequestError(413, self.service._too_big(n))
        try:
            body = self.rfile.read(n)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(408, f"the body (Content-Length {n:,}) did not arrive in time "
                                    f"(--timeout {self.timeout:g} s)") from None
        if len(body) < n:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body):,} of the "
                                    f"{n:,} bytes its Content-Length declares")
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return body, {}  # the raw image as the body
        fields = parse_multipart(ctype, body)
        if "image" not in fields:
            raise RequestError(400, "no file field named 'image' in the form")
        form = {k: v.decode("utf-8", "replace") for k, (fn, v) in fields.items()
                if k != "image" and fn is None}
        return fields["image"][1], form


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: the others get a 503
    with Retry-After from the accepting thread and are closed (no thread, no queue)."""

    daemon_threads = True
    request_queue_size = 64  # the kernel's accept queue: a burst is accepted and answered

    def __init__(self, address, handler, *, max_connections: int = 32):
        self.max_connections = max(1, int(max_connections))
        self._open = 0
        self._open_lock = threading.Lock()
        self._lingering: collections.deque = collections.deque()  # (time, refused socket)
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        return self._open

    def attach(self, service: ColorizeService) -> None:
        self.RequestHandlerClass.service = service

    def process_request(self, request, client_address):
        with self._open_lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
        if full:
            return self._refuse(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed_one()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed_one()

    def _closed_one(self):
        with self._open_lock:
            self._open -= 1

    def _refuse(self, sock: socket.socket) -> None:
        """503 without reading the request (never blocks the accepting thread)."""
        body = json.dumps({"status": 503, "error": f"too many connections (the limit is "
                           f"{self.max_connections}, --max_connections); retry in "
                           f"{_RETRY_AFTER_S} s"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: {_RETRY_AFTER_S}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            sock.send(head + body)  # a few hundred bytes: fits any empty send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering.append((time.monotonic(), sock))
        if len(self._lingering) > _MAX_LINGERING:
            self._close_refused(self._lingering.popleft()[1])

    @staticmethod
    def _close_refused(sock: socket.socket) -> None:
        try:  # discard what the client sent, so the close is a FIN and not a reset
            for _ in range(64):
                if not sock.recv(1 << 16):
                    break
        except OSError:  # BlockingIOError: nothing more to read now
            pass
        sock.close()

    def service_actions(self):
        """Called by `serve_forever` between accepts (at least every poll interval)."""
        now = time.monotonic()
        while self._lingering and now - self._lingering[0][0] > _LINGER_S:
            self._close_refused(self._lingering.popleft()[1])

    def server_close(self):
        while self._lingering:
            self._lingering.popleft()[1].close()
        super().server_close()

    def handle_error(self, request, client_address):
        """A client that went away is one line, not a traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            print(f"{client_address[0]}: connection lost: {type(err).__name__}: {err}",
                  file=sys.stderr)
        else:
            super().handle_error(request, client_address)


def allowed_host_names(host: str, extra=()) -> frozenset[str] | None:
    """Host header names to answer: localhost, 127.0.0.1, ::1, the bound address unless it is
    a wildcard, and `extra` (names or addresses); None when `extra` holds ``*`` (any)."""
    names = {h.strip().lower().strip("[]").rstrip(".") for h in extra if h.strip()}
    if "*" in names:
        return None
    if host not in ("", "0.0.0.0", "::"):
        names.add(host.lower().strip("[]"))
    return frozenset(names | set(LOCAL_HOSTS))


def bind_server(host: str = "127.0.0.1", port: int = 8000, *, quiet: bool = False,
                timeout: float = 5.0, max_connections: int = 32,
                allowed_hosts=()) -> Server:
    """A listening server without a model yet (`attach` one); `port=0` picks a free port.
    Raises OSError when the address cannot be bound (e.g. the port is in use)."""
    if not timeout > 0:
        raise ValueError(f"timeout={timeout} must be positive")
    handler = type("ColorjaxHandler", (Handler,), {
        "quiet": quiet, "timeout": float(timeout),
        "allowed_hosts": allowed_host_names(host, allowed_hosts)})
    return Server((host, port), handler, max_connections=max_connections)


def make_server(colorizer: Colorizer, host: str = "127.0.0.1", port: int = 8000, *,
                quiet: bool = False, timeout: float = 5.0, max_connections: int = 32,
                allowed_hosts=(), **limits) -> Server:
    """A ready server (call `serve_forever`); `port=0` picks a free port. `limits` are
    `ColorizeService`'s (max_upload_mb, max_pixels, max_side, max_concurrent, ...)."""
    server = bind_server(host, port, quiet=quiet, timeout=timeout,
                         max_connections=max_connections, allowed_hosts=allowed_hosts)
    server.attach(ColorizeService(colorizer, **limits))
    return server


def render_page(info: dict) -> str:
    title = html.escape(f"colorjax: {info['model']} (step {info['step']})")
    return (PAGE.replace("__TITLE__", title)
            .replace("__INFO__", json.dumps(info).replace("</", "<\\/")))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 form { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
 #status { min-height: 1.5em; margin: .8rem 0; }
 #status.error { color: #b00020; }
 .pair { display: flex; gap: 1rem; flex-wrap: wrap; }
 figure { margin: 0; }
 figure img { max-width: 45vw; max-height: 70vh; border: 1px solid #ccc; }
 figcaption { font-size: .9rem; color: #555; }
</style></head>
<body>
<h1>__TITLE__</h1>
<form id="form">
  <input type="file" id="file" name="image" accept="image/*">
  <label id="samples-label" hidden>samples
    <select id="samples" name="num_samples" disabled></select></label>
  <button type="submit" id="go">Colorize</button>
</form>
<div id="status"></div>
<div class="pair" id="result" hidden>
  <figure><img id="gray" alt="gray input"><figcaption>gray input</figcaption></figure>
  <div id="colors" class="pair"></div>
</div>
<script>
const INFO = __INFO__;
const $ = (id) => document.getElementById(id);
if (INFO.samples) {
  for (let n = 1; n <= INFO.max_samples; n++) $("samples").add(new Option(n, n));
  $("samples-label").hidden = false; $("samples").disabled = false;
}
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) { status("Choose a photo first.", true); return; }
  if (file.size > INFO.max_upload_mb * 1048576) {
    status(`The file is ${(file.size / 1048576).toFixed(1)} MiB; the limit is ${INFO.max_upload_mb} MiB.`, true); return;
  }
  const body = new FormData();
  body.append("image", file);
  if (INFO.samples) body.append("num_samples", $("samples").value);
  $("go").disabled = true; status("Colorizing " + file.name + " ...");
  try {
    const resp = await fetch("api/colorize", { method: "POST", body });
    const out = await resp.json();
    if (!resp.ok) { status(out.error || resp.statusText, true); return; }
    const stem = file.name.replace(/\\.[^.]*$/, "") || "photo";
    $("gray").src = out.gray;
    $("colors").replaceChildren(...out.colors.map((url, i) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = url; img.className = "color"; img.alt = "colorized";
      const cap = document.createElement("figcaption");
      const a = document.createElement("a");
      a.href = url; a.className = "download";
      a.download = stem + (out.colors.length > 1 ? "_sample" + (i + 1) : "") + "_color.png";
      a.textContent = "download" + (out.colors.length > 1 ? " sample " + (i + 1) : "");
      cap.append("colorized (" + out.width + "\\u00d7" + out.height + ") ", a);
      fig.append(img, cap); return fig;
    }));
    $("result").hidden = false;
    status("Done: " + file.name + ", " + out.width + "\\u00d7" + out.height + " px.");
  } catch (e) {
    status("The request failed: " + e, true);
  } finally { $("go").disabled = false; }
});
</script>
</body></html>
"""




def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m colorjax.serve",
                                description="A local page to colorize photos with an export.")
    p.add_argument("--model", required=True, help="export directory (--mode=export)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--allowed_hosts", default="",
                   help="comma-separated extra names/addresses the Host header may carry "
                        "(localhost, 127.0.0.1, ::1 and --host always may); * allows any")
    p.add_argument("--size", type=int, default=None, help="working size (default: trained)")
    p.add_argument("--max_upload_mb", type=float, default=20.0, help="largest upload")
    p.add_argument("--max_pixels", type=int, default=16_000_000, help="largest image (pixels)")
    p.add_argument("--max_side", type=int, default=16384,
                   help="longest image side (pixels): bounds memory of very wide or tall images")
    p.add_argument("--max_samples", type=int, default=8, help="most samples per request")
    p.add_argument("--max_concurrent", type=int, default=2,
                   help="photos processed at once (bounds memory), for big photos and, "
                        "separately, for photos of at most 1 megapixel")
    p.add_argument("--max_waiting", type=int, default=8,
                   help="photos that may wait for a --max_concurrent slot; more get 503")
    p.add_argument("--max_connections", type=int, default=32,
                   help="open connections (one thread each); more get 503")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds a client may stay silent or take to send a request's headers "
                        "(the body gets 1 s more per 100 KB); then 408 or the connection closes")
    p.add_argument("--quiet", action="store_true", help="no access log")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error(f"--timeout={args.timeout:g} must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:  # before the model loads: a port in use is reported at once
        server = bind_server(args.host, args.port, quiet=args.quiet, timeout=args.timeout,
                             max_connections=args.max_connections,
                             allowed_hosts=args.allowed_hosts.split(","))
    except (OSError, OverflowError) as e:  # in use, no such address, port > 65535
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"error: cannot listen on {args.host}:{args.port}: {why}"
              + (" (choose another --port, or --port=0 for a free one)"
                 if isinstance(e, OSError) and e.errno == errno.EADDRINUSE else ""),
              file=sys.stderr)
        return 1
    try:
        colorizer = Colorizer.load(args.model, size=args.size)
        server.attach(ColorizeService(
            colorizer, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
            max_side=args.max_side, max_samples=args.max_samples,
            max_concurrent=args.max_concurrent, max_waiting=args.max_waiting))
    except ValueError as e:
        server.server_close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"{colorizer} serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
