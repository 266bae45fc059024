"""The HTTP side of the upload server: the request handler, and binding a server
(`connections.Server`: its connection caps) to an address.
"""

from __future__ import annotations

import io
import json
import select
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from colorjax.inference.colorizer import Colorizer
from colorjax.media.photos import gray_of, to_uint8
from colorjax.serving import examples
from colorjax.serving.clips import ClientGone, parse_bool
from colorjax.serving.connections import MAX_CONNECTIONS_PER_CLIENT, Server
from colorjax.serving.page import ASSETS, asset, render_page
from colorjax.serving.requests import (LOCAL_HOSTS, VIDEO_QUERY, DeadlineReader,
                                       RequestError, TooSlow, host_name, parse_multipart,
                                       parse_query)
from colorjax.serving.service import ColorizeService, encode_png, png_data_url

# Bodies up to this much over the limit are read and discarded before a 413, so the browser
# sees the answer instead of a reset connection; larger ones are refused unread.
_DRAIN_LIMIT = 64 << 20
# Multipart headers and boundaries around the file: allowed on top of --max_upload_mb.
_MULTIPART_SLACK = 64 << 10
# A body must arrive at this average rate (bytes/s, --min_upload_rate) once its grace
# (seconds, --upload_grace) is over: a slow but honest link (50 KB/s uploads 20 MB in 7
# minutes) is served, a client dripping bytes to hold a connection is cut after the grace.
MIN_UPLOAD_RATE = 50_000
UPLOAD_GRACE_S = 10.0
# Seconds a client has to take an answer (a big JSON answer to a slow client).
_WRITE_TIMEOUT_S = 60.0


class Handler(BaseHTTPRequestHandler):
    server_version = "colorjax"
    protocol_version = "HTTP/1.1"
    service: ColorizeService  # set on the subclass made by `bind_server`
    quiet = False
    timeout = 5.0  # --timeout: seconds for a request's headers, and for any silence
    min_upload_rate = float(MIN_UPLOAD_RATE)  # --min_upload_rate (bytes/s here)
    upload_grace = UPLOAD_GRACE_S  # --upload_grace
    allowed_hosts: frozenset[str] | None = frozenset(LOCAL_HOSTS)  # None: any Host

    # -- plumbing --

    def setup(self):
        super().setup()
        self.rfile.close()  # the plain socket file: reads go through the deadline instead
        self._reader = DeadlineReader(self.connection, self.timeout, self.min_upload_rate,
                                      self.upload_grace)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self):
        # The request line and headers (or, between keep-alive requests, the next request)
        # must arrive within --timeout; a body must keep --min_upload_rate, see
        # `_content_length`.
        self._started = time.monotonic()
        self._reader.reset(self._started + self.timeout)
        try:
            self.rfile.peek(1)  # the next request's first byte (or one buffered already)
        except TimeoutError:
            # Nothing asked within --timeout: a browser's idle keep-alive connection or its
            # speculative preconnect. Closed without a word: an ordinary visit, not an error.
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except ConnectionError as e:
            # The client closed its side before its answer was written: the page cancels a
            # request that a newer one replaces (another example, a moved hint). Nothing went
            # wrong here and nobody is left to answer: one access-log line, no error.
            self.close_connection = True
            self.log_message("the client closed the connection before its answer (%s)",
                             type(e).__name__)

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
        elif path[1:] in ASSETS:
            self._send(200, *asset(path[1:]))
        elif path.startswith("/examples/") and path.endswith(".jpg"):
            data = examples.jpeg(path[len("/examples/"):-len(".jpg")])
            if data is None:
                return self._error(404, f"no example at {path}")
            self._send(200, data, "image/jpeg")
        elif path == "/api/info":
            self._json(200, self.service.info())
        elif path == "/api/colorize":
            self._error(405, "use POST with an image file")
        elif path == "/api/colorize_video":
            self._error(405, "use POST with a video file")
        else:
            self._error(404, f"no page at {path}")

    do_HEAD = do_GET

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            self._check_host()
            self._check_origin()
            if url.path not in ("/api/colorize", "/api/colorize_video"):
                raise RequestError(404, f"no endpoint at {url.path}")
            video = url.path == "/api/colorize_video"
            query = parse_query(url.query, VIDEO_QUERY if video else None)
        except RequestError as e:
            self._drain_or_close()
            return self._error(e.status, e.message, e.headers)
        if video:
            return self._colorize_video(query)
        try:
            data, form = self._read_upload()
            n = self.service.num_samples(form.get("num_samples", query.get("num_samples")))
            t = self.service.temperature(form.get("temperature", query.get("temperature")))
            hints = self.service.hints(form.get("hints"))
            photo, colors = self.service.colorize(data, n, t, hints)
            if query.get("format") == "png":
                return self._send(200, encode_png(to_uint8(colors[0])), "image/png",
                                  {"Content-Disposition": 'attachment; filename="color.png"'})
            w, h = photo.size
            self._json(200, {
                "model": self.service.colorizer.model_name, "width": w, "height": h,
                "num_samples": n, "had_color": photo.truth is not None,
                "temperature": self.service.temperature_default if t is None else t,
                "hints": len(hints or ()),
                "gray": png_data_url(gray_of(photo)),
                "colors": [png_data_url(to_uint8(c)) for c in colors],
            })
        except RequestError as e:
            self._error(e.status, e.message, e.headers)
        except ConnectionError:  # the client went away: `handle_one_request` says so
            raise
        except Exception as e:  # noqa: BLE001 - never take the server down with a request
            self.log_error("internal error: %r", e)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _colorize_video(self, query: dict):
        """POST /api/colorize_video: the colorized clip as video/mp4 (H.264, yuv420p, the
        clip's timestamps and audio), or a JSON error."""
        try:
            data, form = self._read_upload(field="video", limit=self.service.clip_limits.max_bytes,
                                           too_big=self.service.clip_limits.too_big)
            stabilize = parse_bool("stabilize", form.get("stabilize", query.get("stabilize")),
                                   True)
            mp4, info, stats = self.service.colorize_clip(data, stabilize, self._client_gone)
            self._send(200, mp4, "video/mp4", {
                "Content-Disposition": 'attachment; filename="color.mp4"',
                "X-Colorjax-Width": str(info.width), "X-Colorjax-Height": str(info.height),
                "X-Colorjax-Frames": str(stats["frames"]),
                "X-Colorjax-Duration": f"{info.seconds:.3f}",
                "X-Colorjax-Stabilized": "1" if stabilize else "0",
                "X-Colorjax-Cuts": str(stats["cuts"]),
                "X-Colorjax-Audio": "1" if stats["audio"] else "0"})
        except RequestError as e:
            self._error(e.status, e.message, e.headers)
        except ClientGone:  # nobody to answer: its work was stopped, the connection closes
            self.close_connection = True
            self.log_message("the client went away: its clip's work was stopped")
        except ConnectionError:  # the client went away: `handle_one_request` says so
            raise
        except Exception as e:  # noqa: BLE001 - never take the server down with a request
            self.log_error("internal error: %r", e)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _client_gone(self) -> bool:
        """Whether the client closed its side (or reset) while its request is worked on:
        the request was read whole, so a readable socket that gives no bytes is a close.
        Bytes waiting (a pipelined next request) are left where they are."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            if not ready:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:  # reset, or the socket is gone
            return True

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
        """The declared body size; from now on the reads must keep --min_upload_rate
        (not a deadline that grows with the declared size: a client could declare 20 MB
        and drip it for minutes)."""
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
        self._reader.expect_body(self._started)
        return n

    def _read_upload(self, field: str = "image", limit: int | None = None,
                     too_big=None) -> tuple[bytes, dict]:
        """The uploaded file's bytes (form field `field`, or the raw body) and the other
        form fields; `limit` bytes (default --max_upload_mb), `too_big(n)` its message."""
        n = self._content_length()
        limit = self.service.max_upload_bytes if limit is None else limit
        too_big = too_big or self.service._too_big
        if n > limit + _MULTIPART_SLACK:
            self._drain_or_close()
            raise RequestError(413, too_big(n))
        try:
            body = self.rfile.read(n)
        except TooSlow as e:
            self.close_connection = True
            raise RequestError(408, f"the body (Content-Length {n:,}) came too slowly: "
                                    f"{e}") from None
        except TimeoutError:
            self.close_connection = True
            raise RequestError(408, f"the body (Content-Length {n:,}) did not arrive in time "
                                    f"(--timeout {self.timeout:g} s of silence)") from None
        if len(body) < n:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body):,} of the "
                                    f"{n:,} bytes its Content-Length declares")
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return body, {}  # the raw image as the body
        fields = parse_multipart(ctype, body)
        if field not in fields:
            raise RequestError(400, f"no file field named {field!r} in the form")
        form = {k: v.decode("utf-8", "replace") for k, (fn, v) in fields.items()
                if k != field and fn is None}
        return fields[field][1], form


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
                max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
                min_upload_rate: float = MIN_UPLOAD_RATE, upload_grace: float = UPLOAD_GRACE_S,
                allowed_hosts=()) -> Server:
    """A listening server without a model yet (`attach` one); `port=0` picks a free port.
    `min_upload_rate` is in bytes/s. Raises OSError when the address cannot be bound (e.g.
    the port is in use)."""
    for name, value in (("timeout", timeout), ("min_upload_rate", min_upload_rate)):
        if not value > 0:
            raise ValueError(f"{name}={value} must be positive")
    if not upload_grace >= 0:
        raise ValueError(f"upload_grace={upload_grace} must be 0 or more")
    handler = type("ColorjaxHandler", (Handler,), {
        "quiet": quiet, "timeout": float(timeout), "min_upload_rate": float(min_upload_rate),
        "upload_grace": float(upload_grace),
        "allowed_hosts": allowed_host_names(host, allowed_hosts)})
    return Server((host, port), handler, max_connections=max_connections,
                  max_per_client=max_connections_per_client)


def make_server(colorizer: Colorizer, host: str = "127.0.0.1", port: int = 8000, *,
                quiet: bool = False, timeout: float = 5.0, max_connections: int = 32,
                max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
                min_upload_rate: float = MIN_UPLOAD_RATE, upload_grace: float = UPLOAD_GRACE_S,
                allowed_hosts=(), **limits) -> Server:
    """A ready server (call `serve_forever`); `port=0` picks a free port. `limits` are
    `ColorizeService`'s (max_upload_mb, max_pixels, max_side, max_concurrent, ...)."""
    server = bind_server(host, port, quiet=quiet, timeout=timeout,
                         max_connections=max_connections,
                         max_connections_per_client=max_connections_per_client,
                         min_upload_rate=min_upload_rate, upload_grace=upload_grace,
                         allowed_hosts=allowed_hosts)
    server.attach(ColorizeService(colorizer, **limits))
    return server
