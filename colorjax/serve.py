"""A local web page for an exported colorizer: upload a photo, see gray and colour, download.

    python -m colorjax.serve --model=EXPORT_DIR [--host=127.0.0.1] [--port=8000]

Endpoints (standard library only: `http.server.ThreadingHTTPServer`, one thread a request):

* ``GET /``               the page (single HTML file, inline JS).
* ``GET /api/info``       model name, whether it samples, the limits, as JSON.
* ``POST /api/colorize``  ``multipart/form-data`` with a file field ``image`` (and optional
  ``num_samples``), or the raw image bytes as the body. Query ``?num_samples=N``;
  ``?format=png`` answers with the first colorization as a PNG instead of JSON.
  JSON answer: ``{"width", "height", "gray": data-URL, "colors": [data-URL, ...], ...}``.

Bad requests get a JSON ``{"error": ...}`` with 400 (empty upload, corrupt image, bad
``num_samples``), 411 (no Content-Length), 413 (file over ``--max_upload_mb``, more than
``--max_pixels`` pixels) or 415 (not an image); the server keeps serving.
"""

from __future__ import annotations

import argparse
import base64
import email.message
import html
import io
import json
import sys
import threading
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colorjax.colorize import Colorizer, gray_of, photo_from_pil, to_uint8

# Bodies up to this much over the limit are read and discarded before a 413, so the browser
# sees the answer instead of a reset connection; larger ones are refused unread.
_DRAIN_LIMIT = 64 << 20
# Multipart headers and boundaries around the file: allowed on top of --max_upload_mb.
_MULTIPART_SLACK = 64 << 10


class RequestError(Exception):
    """An answer to a bad request: HTTP status and a message for people."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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


def png_data_url(rgb8: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb8)).decode("ascii")


def encode_png(rgb8: np.ndarray) -> bytes:
    """(H, W, 3) or, for gray (a third of the bytes), (H, W) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    im = Image.fromarray(rgb8)
    im.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


class ColorizeService:
    """Decoding, limits and the model call, independent of HTTP (tested directly too)."""

    def __init__(self, colorizer: Colorizer, *, max_upload_mb: float = 20.0,
                 max_pixels: int = 16_000_000, max_samples: int = 8, max_concurrent: int = 2):
        self.colorizer = colorizer
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        self.max_pixels = int(max_pixels)
        self.max_samples = max(1, int(max_samples)) if colorizer.samples else 1
        # Full-resolution Lab/RGB buffers of big photos are large: bound how many are live.
        self._slots = threading.BoundedSemaphore(max(1, int(max_concurrent)))

    def info(self) -> dict:
        c = self.colorizer
        return {"model": c.model_name, "step": c.metadata.get("step"), "size": c.size,
                "samples": c.samples, "max_samples": self.max_samples,
                "max_upload_mb": self.max_upload_bytes / (1 << 20),
                "max_pixels": self.max_pixels}

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

    def decode(self, data: bytes):
        """Bytes -> Photo, enforcing the limits (pixels checked before decoding)."""
        if not data:
            raise RequestError(400, "empty upload: choose an image file")
        if len(data) > self.max_upload_bytes:
            raise RequestError(413, self._too_big(len(data)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise RequestError(415, "not an image file (PIL cannot identify it): upload a "
                                    "JPEG, PNG, WebP, TIFF, BMP, ... photo") from None
        except Image.DecompressionBombError as e:
            raise RequestError(413, f"too many pixels: {e}") from None
        except Exception as e:  # noqa: BLE001 - a broken header of any kind
            raise RequestError(400, f"cannot read the image: {e}") from None
        w, h = im.size
        if w * h > self.max_pixels:
            raise RequestError(413, f"the image has {w}x{h} = {w * h:,} pixels; the limit is "
                                    f"{self.max_pixels:,} (--max_pixels)")
        if w == 0 or h == 0:
            raise RequestError(400, "the image has no pixels")
        try:
            im = ImageOps.exif_transpose(im)
            im.load()
            return photo_from_pil(im)
        except Exception as e:  # noqa: BLE001 - truncated or damaged data
            raise RequestError(400, f"the image cannot be decoded (truncated or damaged?): "
                                    f"{type(e).__name__}: {e}") from None

    def _too_big(self, n: int) -> str:
        return (f"the upload is {n / (1 << 20):.1f} MiB; the limit is "
                f"{self.max_upload_bytes / (1 << 20):.1f} MiB (--max_upload_mb)")

    def colorize(self, data: bytes, num_samples: int = 1):
        """(photo, [sRGB float images]) for an uploaded file."""
        with self._slots:
            photo = self.decode(data)
            return photo, self.colorizer.colorize_photos([photo], num_samples)[0]


class Handler(BaseHTTPRequestHandler):
    server_version = "colorjax"
    protocol_version = "HTTP/1.1"
    service: ColorizeService  # set on the subclass made by `make_server`
    quiet = False

    # -- plumbing --

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
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

    def _json(self, status: int, obj):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str):
        self._json(status, {"error": message, "status": status})

    # -- routes --

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
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
        if url.path != "/api/colorize":
            self._drain_or_close()
            return self._error(404, f"no endpoint at {url.path}")
        try:
            query = urllib.parse.parse_qs(url.query)
            data, form = self._read_upload()
            n = self.service.num_samples(form.get("num_samples", query.get("num_samples", [""])[0]))
            photo, colors = self.service.colorize(data, n)
            if query.get("format", [""])[0] == "png":
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
            self._error(e.status, e.message)
        except Exception as e:  # noqa: BLE001 - never take the server down with a request
            self.log_error("internal error: %r", e)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _drain_or_close(self):
        """Read a body we will not use (keeps the connection usable), or drop the connection."""
        n = self._content_length(required=False) or 0
        if n <= _DRAIN_LIMIT:
            while n > 0:
                got = len(self.rfile.read(min(n, 1 << 20)))
                if not got:  # the client went away
                    break
                n -= got
        else:
            self.close_connection = True

    def _content_length(self, required=True) -> int | None:
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
        return n

    def _read_upload(self) -> tuple[bytes, dict]:
        """The uploaded file's bytes and the other form fields."""
        n = self._content_length()
        limit = self.service.max_upload_bytes
        if n > limit + _MULTIPART_SLACK:
            self._drain_or_close()
            raise RequestError(413, self.service._too_big(n))
        body = self.rfile.read(n)
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return body, {}  # the raw image as the body
        fields = parse_multipart(ctype, body)
        if "image" not in fields:
            raise RequestError(400, "no file field named 'image' in the form")
        form = {k: v.decode("utf-8", "replace") for k, (fn, v) in fields.items()
                if k != "image" and fn is None}
        return fields["image"][1], form


def make_server(colorizer: Colorizer, host: str = "127.0.0.1", port: int = 8000, *,
                quiet: bool = False, **limits) -> ThreadingHTTPServer:
    """A ready server (call `serve_forever`); `port=0` picks a free port."""
    service = ColorizeService(colorizer, **limits)
    handler = type("ColorjaxHandler", (Handler,), {"service": service, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m colorjax.serve",
                                description="A local page to colorize photos with an export.")
    p.add_argument("--model", required=True, help="export directory (--mode=export)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--size", type=int, default=None, help="working size (default: trained)")
    p.add_argument("--max_upload_mb", type=float, default=20.0, help="largest upload")
    p.add_argument("--max_pixels", type=int, default=16_000_000, help="largest image (pixels)")
    p.add_argument("--max_samples", type=int, default=8, help="most samples per request")
    p.add_argument("--max_concurrent", type=int, default=2,
                   help="photos processed at once (bounds memory); more requests wait")
    p.add_argument("--quiet", action="store_true", help="no access log")
    args = p.parse_args(argv)
    try:
        colorizer = Colorizer.load(args.model, size=args.size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    server = make_server(colorizer, args.host, args.port, quiet=args.quiet,
                         max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                         max_samples=args.max_samples, max_concurrent=args.max_concurrent)
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
