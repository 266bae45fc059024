"""A hostile client's replay against the upload server, on loopback only, bounded in count
and time (every loop stops by itself): drip-fed bodies against a declared 20 MB, from one
address and from many; a clip whose stream grows past --max_pixels after a small header; a
clip over its work budget, and one whose client goes away; hints fields that are huge or
nested without end; AVIF and HEIC photos sent as photos.

Loopback has many addresses on Linux (127.0.0.0/8): the hostile clients bind to some of
them and the honest ones to others, so the per-client connection cap sees them apart, as it
would see different machines.
"""

import concurrent.futures
import io
import json
import socket
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from colorjax.inference.colorizer import Colorizer
from colorjax.serve import make_server

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)
from test_serve import StubColorizer, _running, photo_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="binds clients to 127.0.0.x addresses (Linux loopback)")

HOST = "127.0.0.1"
DECLARED = 20 << 20  # what a dripper says its body is
TIMEOUT = 2.0  # --timeout: silence allowed between reads
GRACE = 1.0  # --upload_grace
MIN_RATE = 10_000  # --min_upload_rate, bytes/s
DRIP_EVERY = 0.4  # a dripper sends one byte this often: never silent for --timeout


@pytest.fixture
def stub_server():
    """Start model-free servers (answers zeros at once) with the test's short deadlines."""
    gens = []

    def start(**options):
        options = {"timeout": TIMEOUT, "upload_grace": GRACE, "min_upload_rate": MIN_RATE,
                   **options}
        srv = make_server(StubColorizer(), HOST, 0, quiet=True, **options)
        gen = _running(srv)
        gens.append(gen)
        return next(gen), srv

    yield start
    for gen in gens:
        next(gen, None)


def _connect(addr, source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(addr)
    return sock


def _drip(addr, source: str, stop: threading.Event, reconnect: bool, until: float) -> list:
    """A client that declares a 20 MB upload and sends it a byte every DRIP_EVERY s; when the
    server closes (or refuses) it, it connects again if `reconnect`. Returns
    [(seconds the connection lasted, the server's first answer line)] per connection."""
    held = []
    while not stop.is_set() and time.monotonic() < until:
        start = time.monotonic()
        answer = b""
        try:
            sock = _connect(addr, source)
        except OSError:
            time.sleep(0.05)
            continue
        with sock:
            try:
                sock.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: image/png\r\n"
                             b"Content-Length: %d\r\n\r\n" % DECLARED)
                sock.settimeout(DRIP_EVERY)
                while not stop.is_set() and time.monotonic() < until:
                    sock.sendall(b"\x89")
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue  # nothing yet: drip on
                    answer += chunk
                    if not chunk:
                        break
                    while chunk:  # the answer, then the close
                        sock.settimeout(2)
                        chunk = sock.recv(4096)
                        answer += chunk
                    break
            except TimeoutError:
                pass
            except OSError:  # closed under us (a reset): that is a cut too
                pass
        held.append((time.monotonic() - start, answer.split(b"\r\n", 1)[0]))
        if not reconnect:
            break
        time.sleep(0.05)
    return held


def _honest(addr, source: str, until: float) -> list:
    """A client that posts a small photo, retrying after a 503 until `until`; the statuses
    it got, in order."""
    import http.client

    body = photo_bytes(40, 30, "PNG")
    statuses = []
    while time.monotonic() < until:
        conn = http.client.HTTPConnection(*addr, timeout=10, source_address=(source, 0))
        try:
            conn.request("POST", "/api/colorize", body, {"Content-Type": "image/png"})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        except OSError as e:
            statuses.append(type(e).__name__)
        finally:
            conn.close()
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    return statuses


def _wait_open(srv, n: int, bound: float = 10.0) -> None:
    deadline = time.monotonic() + bound
    while srv.open_connections < n and time.monotonic() < deadline:
        time.sleep(0.02)


# --- slow clients -----------------------------------------------------------------------


def test_a_dripped_body_is_cut_after_the_grace_whatever_size_it_declares(stub_server):
    """One byte every 0.4 s against a declared 20 MB was kept for --timeout + 210 s (the
    deadline grew with the declared size); now it gets 408 once the grace is over."""
    addr, _ = stub_server()
    stop = threading.Event()
    held = _drip(addr, "127.0.0.2", stop, reconnect=False, until=time.monotonic() + 10)
    (seconds, line), = held
    assert line.startswith(b"HTTP/1.1 408 "), held
    assert GRACE <= seconds < GRACE + 2.5, held


def test_an_honest_slow_body_above_the_floor_is_served(stub_server):
    """A body sent in pieces at about twice the floor is read to the end and answered."""
    addr, _ = stub_server()
    data = photo_bytes(120, 90, "PNG")  # about 30 KB: 1.5 s at 20 KB/s
    assert len(data) > 2 * MIN_RATE * GRACE
    with _connect(addr, "127.0.0.2") as sock:
        sock.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(data))
        step = 2 * MIN_RATE // 10
        for i in range(0, len(data), step):
            sock.sendall(data[i:i + step])
            time.sleep(0.1)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


def test_drippers_from_one_address_cannot_take_every_connection(stub_server):
    """32 drippers that reconnect as soon as they are cut, from two addresses, against 32
    connection slots: the per-client cap leaves slots to 5 honest clients on other
    addresses, who are served at once (before: 503 for minutes)."""
    addr, srv = stub_server(max_connections=32, max_connections_per_client=4)
    stop = threading.Event()
    end = time.monotonic() + 20
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        drippers = [pool.submit(_drip, addr, f"127.0.0.{2 + i % 2}", stop, True, end)
                    for i in range(32)]
        _wait_open(srv, 8)
        time.sleep(0.3)  # the drippers are all in (and those over the cap refused)
        start = time.monotonic()
        honest = [pool.submit(_honest, addr, f"127.0.0.{10 + i}", start + 10)
                  for i in range(5)]
        results = [h.result(30) for h in honest]
        served_in = time.monotonic() - start
        stop.set()
        held = [d.result(30) for d in drippers]
    assert all(r[-1] == 200 for r in results), results
    assert served_in < 5, (served_in, results)
    # The drippers were held to 4 connections an address, and refused beyond that.
    refused = [line for h in held for _, line in h if line.startswith(b"HTTP/1.1 503")]
    assert refused, held


def test_drippers_from_many_addresses_are_cut_and_honest_clients_get_in(stub_server):
    """32 drippers, each from its own address, take all 32 slots; the rate floor cuts
    them after the grace and the honest clients (retrying their 503s) are served."""
    addr, srv = stub_server(max_connections=32)
    stop = threading.Event()
    end = time.monotonic() + 20
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        drippers = [pool.submit(_drip, addr, f"127.0.1.{2 + i}", stop, False, end)
                    for i in range(32)]
        _wait_open(srv, 32)
        start = time.monotonic()
        honest = [pool.submit(_honest, addr, f"127.0.0.{10 + i}", start + 15)
                  for i in range(5)]
        results = [h.result(30) for h in honest]
        served_in = time.monotonic() - start
        stop.set()
        held = [d.result(30) for d in drippers]
    assert all(r[-1] == 200 for r in results), results
    assert served_in < GRACE + TIMEOUT + 3, (served_in, results)
    cut = [line for h in held for _, line in h]
    assert sum(line.startswith(b"HTTP/1.1 408 ") for line in cut) >= 30, held


# --- hints ------------------------------------------------------------------------------


def test_hints_fields_are_bounded_before_parsing():
    """`[` x 100,000 was an HTTP 500 (RecursionError); megabytes of `[[],[],...]` were
    parsed into millions of lists before the count was checked. Now: one 400 line each,
    from the field's size and nesting, before it is parsed."""
    from test_serve import HintStub, upload

    srv = make_server(HintStub(), HOST, 0, quiet=True, timeout=TIMEOUT)
    gen = _running(srv)
    addr = next(gen)
    try:
        photo = photo_bytes(40, 30)
        cases = [("[" * 100_000, "hints is 100,000 bytes long; at most 65,536"),
                 ("[" * 5_000 + "]" * 5_000, "hints is JSON nested 5,000 levels deep"),
                 ("[" + ",".join(["[]"] * 500_000) + "]", "hints is 1,500,001 bytes long"),
                 ("[" + ",".join(["[]"] * 20_000) + "]", "20,000 hints; at most 256")]
        for hints, message in cases:
            status, _, body = upload(addr, {"image": photo, "hints": hints})
            out = json.loads(body)
            assert status == 400, (hints[:20], out)
            assert message in out["error"], (hints[:20], out)
            assert "\n" not in out["error"]
        # A string may hold brackets: they are not nesting.
        status, _, body = upload(addr, {"image": photo, "hints": json.dumps(
            [{"x": 1, "y": 1, "rgb": "[[[[[[[[[[[[" * 10}])})
        assert status == 400 and "rgb=" in json.loads(body)["error"], body
        assert upload(addr, {"image": photo, "hints": json.dumps(
            [{"x": 1, "y": 1, "rgb": "#ff0000"}] * 256, indent=2)})[0] == 200
    finally:
        next(gen, None)


# --- clips ------------------------------------------------------------------------------


class SlowColorizer:
    """The tiny export's Colorizer, counting the frames it colorizes and taking at least
    `delay` s a batch (so that a clip's work lasts long enough to be cut)."""

    def __init__(self, colorizer, delay=0.0):
        self._colorizer, self.delay, self.frames = colorizer, delay, 0
        self.started = threading.Event()

    def __getattr__(self, name):
        return getattr(self._colorizer, name)

    def predict_small(self, photos, *args, **kwargs):
        self.started.set()
        time.sleep(self.delay)
        self.frames += len(photos)
        return self._colorizer.predict_small(photos, *args, **kwargs)


@pytest.fixture(scope="module")
def tiny_colorizer(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    return Colorizer.load(str(path))


@pytest.fixture
def clip_server(tiny_colorizer, tmp_path):
    """Start a server with the tiny model (wrapped in a SlowColorizer); its clips' private
    folders go to tmp_path/clips, which must be empty at the end."""
    gens, tmp = [], tmp_path / "clips"
    tmp.mkdir()

    def start(delay=0.0, **options):
        colorizer = SlowColorizer(tiny_colorizer, delay)
        srv = make_server(colorizer, HOST, 0, quiet=True, tmp_dir=str(tmp), **options)
        gen = _running(srv)
        gens.append(gen)
        return next(gen), srv.RequestHandlerClass.service, colorizer

    yield start
    for gen in gens:
        next(gen, None)
    assert list(tmp.iterdir()) == []  # every clip's private folder is gone


def test_a_clip_whose_stream_outgrows_its_header_is_refused(clip_server, tmp_path):
    """The header says 64x64; from its 6th frame the stream is 640x640, over --max_pixels:
    413 naming the limit (before: colorized at 640x640, whatever --max_pixels said)."""
    from test_serve_video import post_clip
    from test_video import size_switching_ts

    addr, _, _ = clip_server(max_pixels=100_000)
    data = size_switching_ts(tmp_path / "switch.ts").read_bytes()
    status, _, body = post_clip(addr, data, filename="switch.ts")
    out = json.loads(body)
    assert status == 413, out
    assert "640x640 = 409,600 pixels; the limit is 100,000 (--max_pixels)" in out["error"], out
    assert "its header says 64x64" in out["error"], out
    # The same clip within the limits is colorized (the writer scales to the header's size).
    addr, _, _ = clip_server(max_pixels=500_000)
    status, ctype, body = post_clip(addr, data, filename="switch.ts")
    assert status == 200 and ctype == "video/mp4", body[:300]


def test_a_clip_over_its_work_budget_is_stopped_with_a_clear_error(clip_server, tmp_path):
    from test_serve_video import clip, post_clip

    addr, service, colorizer = clip_server(delay=0.3, max_clip_work_seconds=0.5,
                                           max_concurrent=1)
    data = clip(tmp_path, n=48, audio=0)  # 6 batches of 8: at least 1.8 s of work
    start = time.monotonic()
    status, _, body = post_clip(addr, data)
    out = json.loads(body)
    assert status == 413, out
    assert "more than 0.5 s to colorize" in out["error"], out
    assert "--max_clip_work_seconds" in out["error"], out
    assert colorizer.frames < 48
    assert time.monotonic() - start < 10
    assert service.big._free.acquire(timeout=5)  # its lane slot was given back
    service.big.release()


def test_a_clips_work_stops_when_its_client_goes_away(clip_server, tmp_path):
    from test_serve_video import clip, multipart_video

    addr, service, colorizer = clip_server(delay=0.3, max_concurrent=1)  # one clip slot
    data = clip(tmp_path, n=96, audio=0)  # 12 batches of 8: at least 3.6 s of work
    ctype, body = multipart_video(data)
    sock = _connect(addr, "127.0.0.2")
    sock.sendall(f"POST /api/colorize_video HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 f"{ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    assert colorizer.started.wait(30)  # its frames are being colorized
    sock.close()  # the page was closed
    gone = time.monotonic()
    assert service.big._free.acquire(timeout=10)  # the work stopped: its slot is free
    service.big.release()
    assert time.monotonic() - gone < 3
    assert colorizer.frames < 96


# --- AVIF and HEIC photos ---------------------------------------------------------------

# The start of a HEIC photo (an iPhone's): the `ftyp` box of HEIF with the HEVC brands.
# The rest is no valid HEIF: Pillow here cannot read HEIC at all, so only the start counts.
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"


def avif_bytes(w=40, h=30):
    from PIL import features

    if not features.check_module("avif"):
        pytest.skip("this Pillow cannot write AVIF (no libavif)")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(photo_bytes(w, h, "PNG"))))).save(
        buf, "AVIF")
    return buf.getvalue()


def test_avif_and_heic_photos_are_photos_never_clips(tmp_path):
    """An AVIF photo was refused as "a video clip" (its container is MP4's; FFmpeg even
    opens it as a one-frame video); a HEIC one too. Now AVIF is colorized where Pillow reads
    it, HEIC is refused as a photo this server cannot read, and neither goes to the clips."""
    from test_serve import HintStub, upload
    from test_serve_video import post_clip

    srv = make_server(HintStub(), HOST, 0, quiet=True, timeout=TIMEOUT)
    gen = _running(srv)
    addr = next(gen)
    try:
        avif = avif_bytes()
        status, _, body = upload(addr, {"image": avif})
        assert status == 200, body[:300]
        assert (json.loads(body)["width"], json.loads(body)["height"]) == (40, 30)
        info = json.loads(exchange_info(addr))
        assert "AVIF" in info["photo_formats"]

        heic = HEIC_HEAD + bytes(2000)
        status, _, body = upload(addr, {"image": heic})
        error = json.loads(body)["error"]
        assert status == 415, error
        assert "a HEIC photo, which cannot be read here" in error, error
        assert "video" not in error, error

        for data, name in ((avif, "photo.avif"), (heic, "photo.heic")):
            status, _, body = post_clip(addr, data, filename=name)
            error = json.loads(body)["error"]
            assert status == 415, (name, error)
            assert "this is a photo, not a video clip" in error, (name, error)
    finally:
        next(gen, None)


def exchange_info(addr) -> bytes:
    from test_serve import request

    return request(addr, "GET", "/api/info")[2]


def test_the_page_never_sends_avif_or_heic_files_as_clips():
    """The page picks the endpoint from the file's type and name (`isClip`): run that very
    function (from the served page.js) in Node on the names and types systems give photos."""
    import re
    import shutil
    import subprocess

    from colorjax.serving.page import asset

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed: the page's JavaScript cannot be run here")
    page = asset("page.js")[0].decode()
    consts = re.findall(r"^const (?:CLIP|PHOTO)_EXT = .*;$", page, re.M)
    function = re.search(r"^function isClip\(file\) \{.*?^\}$", page, re.M | re.S).group(0)
    files = [("photo.avif", "image/avif", False), ("photo.avif", "", False),
             ("burst.avifs", "video/avif", False), ("IMG_0001.HEIC", "", False),
             ("IMG_0001.heic", "image/heic", False), ("burst.heics", "video/heic", False),
             ("photo.heif", "application/octet-stream", False), ("a.hif", "", False),
             ("photo.jpg", "image/jpeg", False), ("clip.mp4", "video/mp4", True),
             ("clip.mkv", "", True), ("clip.mov", "application/octet-stream", True)]
    script = "\n".join(["const INFO = {video: true};", *consts, function,
                        f"const files = {json.dumps([[n, t] for n, t, _ in files])};",
                        "console.log(JSON.stringify(files.map(([name, type]) => "
                        "isClip({name, type}))));"])
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    wrong = [(n, t) for (n, t, clip), g in zip(files, got) if g != clip]
    assert not wrong, f"sent the wrong way: {wrong}"
