"""A local web page for an exported colorizer: try an example photo with one click, or drop or
choose your own, compare gray and colour with a slider, download; the export's own figures
against gray in words; samples as a gallery, the temperature, colour hints placed by
clicking; or drop a short video clip and get it back colorized, to play in the page or
download.

    python -m colorjax.serve --model=EXPORT_DIR [--host=127.0.0.1] [--port=8000]

Endpoints (standard library only: `http.server.ThreadingHTTPServer`, one thread a connection):

* ``GET /``               the page (``colorjax/serving/static/index.html`` with the model's
  info filled in), ``GET /page.css`` and ``GET /page.js`` its style and script (nothing from
  elsewhere: it works offline; page.js's opening comment says what it offers).
* ``GET /examples/NAME.jpg``  an example photo (`colorjax.serving.examples`: scikit-image's
  astronaut, coffee, chelsea, rocket, at most 512 px, made on first request).
* ``GET /api/info``       model name, whether it samples or takes hints, the limits, the
  examples, and ``evaluation``: the export's metrics table against gray (metadata.json) in
  words, or null when it has none (`colorjax.serving.model_eval`), as JSON.
* ``POST /api/colorize``  ``multipart/form-data`` with a file field ``image`` (and optional
  ``num_samples``, ``temperature``, ``hints``), or the raw image bytes as the body. Query
  ``?num_samples=N``, ``?temperature=T`` and ``?format=json|png``: ``png`` answers with the
  first colorization as a PNG instead of JSON.
  JSON answer: ``{"width", "height", "gray": data-URL, "colors": [data-URL, ...], ...}``.
* ``POST /api/colorize_video``  a short clip: ``multipart/form-data`` with a file field
  ``video`` (and optional ``stabilize``: 1 (default) or 0), or the raw bytes as the body;
  query ``?stabilize=0|1``. The answer is the colorized clip, ``video/mp4``: H.264 4:2:0
  (what browsers play) with the clip's own timestamps, so its frame rate, and its audio
  copied unchanged; ``X-Colorjax-Frames``, ``-Width``, ``-Height``, ``-Duration`` (s),
  ``-Stabilized``, ``-Cuts`` headers describe it. `colorjax.video.colorize_video_file` does
  the work, with temporal stabilisation unless ``stabilize=0``; the upload and the output
  live in a private temporary directory (``--tmp_dir``, default the system's) that is removed
  after the answer and on every error. What is refused and why: `colorjax/serving/clips.py`
  (the content is probed, never the name; odd widths or heights are refused because browsers
  play H.264 only as 4:2:0, which needs even sides). A clip holds one of the big photos'
  ``--max_concurrent`` slots while it is colorized.

``temperature`` (classification models such as ``colorful`` only; ``/api/info`` gives the
model's default as ``"temperature"``, null for other models): the annealed mean's T in
(0, ∞), 1 = the mean, lower = more vivid. The page shows a slider for it (0.05 to 1).

``hints`` (models trained with ``config.model.hints=True``; ``/api/info`` says ``"hints":
true``): JSON text, ``[{"x": 10, "y": 20, "rgb": [255, 0, 0]}, {"x": 5, "y": 7, "rgb":
"#00ff00"}, {"x": 1, "y": 2, "ab": [20, -30]}]``, x and y in the uploaded photo's pixels
(after its EXIF orientation), read by `colorjax.hints.hints_from_json`; the answer's
``"hints"`` is how many were used. The page places them where the photo is clicked.

Bad requests get a JSON ``{"error": ...}`` with 400 (empty upload, corrupt image, bad
``num_samples``, a bad ``temperature`` or one for a model without one, bad ``hints`` (not JSON,
not the format, off the photo, more than 256, over 64 KiB or nested over 8 deep: the last two
checked before the field is parsed) or hints for a model without them, unknown
query parameter or value, a Host header not in ``--allowed_hosts``, a truncated or damaged
clip, a clip of odd width or height, a bad ``stabilize``),
403 (a POST from another site's page: ``Origin`` is not this server), 408 (headers not within
``--timeout``, silence that long, or a body under ``--min_upload_rate`` once ``--upload_grace``
is over), 411 (no Content-Length), 413 (file over ``--max_upload_mb``,
more than ``--max_pixels`` pixels, a side over ``--max_side``; a clip over ``--max_video_mb``,
``--max_video_seconds`` or ``--max_video_frames``, any decoded frame of it over
``--max_pixels`` or ``--max_side`` whatever its header says, or more than
``--max_clip_work_seconds`` of colorizing), 415 (not an image, or a HEIC photo this Pillow
cannot read; not a video clip (AVIF and HEIC photos are not clips), no video stream or an
audio codec MP4 cannot hold), 503 with
``Retry-After`` (more than ``--max_connections`` connections, more than
``--max_connections_per_client`` from one address, or more than ``--max_concurrent``
photos in work and ``--max_waiting`` waiting); the server keeps serving. A clip whose client
goes away is stopped between frames.

A connection that asks nothing within ``--timeout`` (a browser's idle keep-alive connection,
or one it opened in advance and never used) is closed without a log line, and a request the
client cancels (the page does when a newer one replaces it) is one line saying so: an
ordinary visit logs only its requests.

Hardening, and why: every read has a deadline (a client that stalls cannot hold a thread) and
a body must average ``--min_upload_rate`` once ``--upload_grace`` is over (one that sends a
declared 20 MB a byte at a time is cut after the grace, whatever size it declares); threads
are capped, and so are one remote address's connections (``--max_connections_per_client``:
a few drip-feeding sockets cannot take every slot); photos in memory are capped (excess work
is refused with 503, never queued without end); pixels and the longest side are checked
from the header before anything is decoded (the Lab conversion works in stripes of whole
rows, so a 16,000,000 x 1 image would be one 16-megapixel stripe); the Host check stops DNS
rebinding and the Origin check stops other sites' pages from posting to the API.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()

import argparse
import errno
import sys

from colorjax.inference.colorizer import Colorizer
from colorjax.platform import runtime, xla_cpu
from colorjax.serving.requests import RequestError, parse_multipart
from colorjax.serving.server import (MAX_CONNECTIONS_PER_CLIENT, MIN_UPLOAD_RATE,
                                     UPLOAD_GRACE_S, bind_server, make_server)
from colorjax.serving.service import ColorizeService

__all__ = ["ColorizeService", "RequestError", "bind_server", "main", "make_server", "parse_args",
           "parse_multipart"]


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
    p.add_argument("--compilation_cache", default=None, metavar="DIR", help=runtime.CACHE_HELP)
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
    p.add_argument("--max_connections_per_client", type=int, default=MAX_CONNECTIONS_PER_CLIENT,
                   help="open connections from one remote address; more get 503 (behind a "
                        "reverse proxy every client has the proxy's address: raise it)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds a client may stay silent or take to send a request's headers; "
                        "then 408 or the connection closes")
    p.add_argument("--min_upload_rate", type=float, default=MIN_UPLOAD_RATE / 1000,
                   help="KB/s (1000 bytes) a request body must average once --upload_grace "
                        "is over; a slower one gets 408 and the connection closes")
    p.add_argument("--upload_grace", type=float, default=UPLOAD_GRACE_S,
                   help="seconds from a request's start before --min_upload_rate applies")
    p.add_argument("--max_video_mb", type=float, default=20.0, help="largest video clip upload")
    p.add_argument("--max_video_seconds", type=float, default=30.0,
                   help="longest video clip (seconds, from its frames' timestamps)")
    p.add_argument("--max_video_frames", type=int, default=1800,
                   help="most frames in a video clip (bounds the work of high frame rates)")
    p.add_argument("--max_clip_work_seconds", type=float, default=300.0,
                   help="seconds of colorizing one clip may take (its length limits bound "
                        "the frames, not the work per frame); then 413 and the work stops")
    p.add_argument("--tmp_dir", default=None,
                   help="where uploaded clips are colorized (a private folder each, removed "
                        "after the answer; default: the system's temporary folder)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    args = p.parse_args(argv)
    for name in ("timeout", "min_upload_rate", "max_clip_work_seconds"):
        if not getattr(args, name) > 0:
            p.error(f"--{name}={getattr(args, name):g} must be positive")
    if not args.upload_grace >= 0:
        p.error(f"--upload_grace={args.upload_grace:g} must be 0 or more")
    if args.max_connections_per_client < 1:
        p.error(f"--max_connections_per_client={args.max_connections_per_client} must be "
                "1 or more")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:  # before the model loads: a port in use is reported at once
        server = bind_server(args.host, args.port, quiet=args.quiet, timeout=args.timeout,
                             max_connections=args.max_connections,
                             max_connections_per_client=args.max_connections_per_client,
                             min_upload_rate=args.min_upload_rate * 1000,
                             upload_grace=args.upload_grace,
                             allowed_hosts=args.allowed_hosts.split(","))
    except (OSError, OverflowError) as e:  # in use, no such address, port > 65535
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"error: cannot listen on {args.host}:{args.port}: {why}"
              + (" (choose another --port, or --port=0 for a free one)"
                 if isinstance(e, OSError) and e.errno == errno.EADDRINUSE else ""),
              file=sys.stderr)
        return 1
    try:
        runtime.enable_compilation_cache(args.compilation_cache)  # compiled once per machine
        xla_cpu.configure_for_export(args.model)  # convolutions for its network
        colorizer = Colorizer.load(args.model, size=args.size)
        server.attach(ColorizeService(
            colorizer, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
            max_side=args.max_side, max_samples=args.max_samples,
            max_concurrent=args.max_concurrent, max_waiting=args.max_waiting,
            max_video_mb=args.max_video_mb, max_video_seconds=args.max_video_seconds,
            max_video_frames=args.max_video_frames,
            max_clip_work_seconds=args.max_clip_work_seconds, tmp_dir=args.tmp_dir))
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
