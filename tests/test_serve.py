"""The upload page's server: colorized answers of the input's size, clear 4xx answers for bad
requests (after which it keeps serving), several requests at once; and its hardening: read
deadlines, caps on connections and photos in work (503 + Retry-After), the longest side,
query values, Host and Origin checks, a port in use in one line."""

import base64
import concurrent.futures
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax.inference.colorizer import Colorizer
from colorjax.serve import ColorizeService, RequestError, make_server, parse_multipart

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)

MAX_PIXELS = 300_000
MAX_UPLOAD_MB = 0.2
MAX_SIDE = 2000
TIMEOUT = 1.5  # --timeout of the test servers: stalls are cut off quickly


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    srv = make_server(Colorizer.load(str(path)), "127.0.0.1", 0, quiet=True, timeout=TIMEOUT,
                      max_pixels=MAX_PIXELS, max_upload_mb=MAX_UPLOAD_MB, max_side=MAX_SIDE,
                      max_concurrent=2)
    yield from _running(srv)


def _running(srv):
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[:2]
    srv.shutdown()
    srv.server_close()


def photo_bytes(w, h, fmt="JPEG", mode="RGB"):
    im = Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def multipart(fields):
    """fields: {name: bytes (a file) or str (a value)} -> (content type, body)."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="x.jpg"\r\n' \
                   "Content-Type: application/octet-stream\r\n\r\n"
        else:
            head, value = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', value.encode()
        out += f"--{boundary}\r\n".encode() + head.encode() + value + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def request(addr, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(*addr, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def upload(addr, fields, query=""):
    ctype, body = multipart(fields)
    return request(addr, "POST", "/api/colorize" + query, body, {"Content-Type": ctype})


def decode_data_url(url):
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_page_and_info(server):
    status, ctype, body = request(server, "GET", "/")
    assert status == 200
    assert ctype.startswith("text/html")
    assert b'type="file"' in body
    assert b"unet" in body
    status, _, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200
    assert info["model"] == "unet"
    assert info["samples"] is False
    assert info["max_pixels"] == MAX_PIXELS
    assert info["hints"] is False


def test_upload_gives_a_colorized_image_of_the_same_size(server):
    status, ctype, body = upload(server, {"image": photo_bytes(333, 517)})
    assert status == 200, body
    out = json.loads(body)
    assert (out["width"], out["height"], out["had_color"]) == (333, 517, True)
    color = decode_data_url(out["colors"][0])
    assert color.size == (333, 517)
    assert color.mode == "RGB"
    assert decode_data_url(out["gray"]).size == (333, 517)

    # Raw bytes as the body and a PNG answer (for curl).
    status, ctype, body = request(server, "POST", "/api/colorize?format=png",
                                  photo_bytes(101, 99, "PNG", "L"), {"Content-Type": "image/png"})
    assert status == 200, body
    assert ctype == "image/png", body
    assert Image.open(io.BytesIO(body)).size == (101, 99)


@pytest.mark.parametrize("name,make,status,message", [
    ("not an image", lambda: {"image": b"%PDF-1.4 definitely not a photo"}, 415,
     "not an image file"),
    ("empty upload", lambda: {"image": b""}, 400, "empty upload"),
    ("no file field", lambda: {"other": b"123"}, 400, "no file field named 'image'"),
    ("too many pixels", lambda: {"image": photo_bytes(600, 600)}, 413, "--max_pixels"),
    ("file too large", lambda: {"image": np.random.default_rng(0).bytes(300_000)}, 413,
     "--max_upload_mb"),
    ("truncated", lambda: {"image": photo_bytes(300, 200, "PNG")[:3000]}, 400,
     "cannot be decoded"),
    ("bad num_samples", lambda: {"image": photo_bytes(30, 20), "num_samples": "two"}, 400,
     "not an integer"),
    ("samples from a deterministic model",
     lambda: {"image": photo_bytes(30, 20), "num_samples": "2"}, 400, "deterministic"),
    ("hints to a model without them", lambda: {"image": photo_bytes(30, 20), "hints":
     '[{"x": 1, "y": 2, "rgb": [255, 0, 0]}]'}, 400, "'unet' takes no colour hints"),
    ("hints that are not JSON", lambda: {"image": photo_bytes(30, 20), "hints": "[{x: 1"},
     400, "hints is not valid JSON"),
])
def test_bad_requests_get_clear_answers_and_the_server_keeps_serving(
        server, name, make, status, message):
    got, ctype, body = upload(server, make())
    assert got == status, (name, body)
    assert ctype == "application/json"
    assert message in json.loads(body)["error"]
    ok, _, body = upload(server, {"image": photo_bytes(31, 17)})
    assert ok == 200
    assert json.loads(body)["width"] == 31


def test_protocol_errors(server):
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "GET", "/api/colorize")[0] == 405
    assert request(server, "POST", "/api/other", b"x")[0] == 404
    # A huge declared body is refused before it is read.
    conn = http.client.HTTPConnection(*server, timeout=60)
    conn.putrequest("POST", "/api/colorize")
    conn.putheader("Content-Length", str(10 << 30))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert "--max_upload_mb" in json.loads(resp.read())["error"]
    conn.close()
    # No Content-Length at all.
    conn = http.client.HTTPConnection(*server, timeout=60)
    conn.putrequest("POST", "/api/colorize")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    assert upload(server, {"image": photo_bytes(31, 17)})[0] == 200


def test_concurrent_requests_each_get_their_own_answer(server):
    sizes = [(31, 17), (64, 48), (333, 517), (17, 90), (120, 77), (31, 17)]
    expected = {}
    for size in set(sizes):  # sequential answers, to compare with
        _, _, body = upload(server, {"image": photo_bytes(*size)})
        expected[size] = np.asarray(decode_data_url(json.loads(body)["colors"][0]))

    def one(size):
        status, _, body = upload(server, {"image": photo_bytes(*size)})
        assert status == 200, body
        return size, np.asarray(decode_data_url(json.loads(body)["colors"][0]))

    with concurrent.futures.ThreadPoolExecutor(len(sizes)) as pool:
        for size, got in pool.map(one, sizes):
            assert got.shape == (size[1], size[0], 3)
            np.testing.assert_array_equal(got, expected[size])


def test_parse_multipart():
    ctype, body = multipart({"image": b"\r\n--abc\r\nbinary\r\n", "num_samples": "3"})
    fields = parse_multipart(ctype, body)
    assert fields["image"] == ("x.jpg", b"\r\n--abc\r\nbinary\r\n")
    assert fields["num_samples"] == (None, b"3")


# --- hardening ------------------------------------------------------------------------


class StubColorizer:
    """What the server needs of a Colorizer, without a model: answers zeros, and with
    `hold` set waits in `colorize_photos` until released (to fill the slots)."""

    model_name, metadata, size, samples = "stub", {"step": 0}, 32, False

    def __init__(self, hold=False):
        self.hold, self.entered, self.release = hold, threading.Semaphore(0), threading.Event()

    def colorize_photos(self, photos, num_samples=1):
        self.entered.release()
        if self.hold:
            assert self.release.wait(30), "the test never released the stub"
        return [[np.zeros(p.l.shape + (3,), np.float32)] * num_samples for p in photos]


@pytest.fixture
def stub_server():
    """(address, server, stub) of a model-free server with small caps; started lazily."""
    servers = []

    def start(hold=False, **options):
        stub = StubColorizer(hold)
        srv = make_server(stub, "127.0.0.1", 0, quiet=True, **options)
        gen = _running(srv)
        servers.append((gen, stub))
        return next(gen), srv, stub

    yield start
    for gen, stub in servers:
        stub.release.set()
        next(gen, None)


def exchange(addr, method, path, body=None, headers=None, skip_host=False):
    """(status, headers, parsed JSON or raw body) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(*addr, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=skip_host or "Host" in (headers or {}))
        for k, v in {"Content-Length": str(len(body or b"")), **(headers or {})}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("Content-Type") == "application/json":
            data = json.loads(data)
        return resp.status, resp, data
    finally:
        conn.close()


def test_unknown_query_parameters_and_values_are_refused(server):
    img = photo_bytes(40, 30, "PNG")
    for query, message in [("?format=exe", "format='exe' is not allowed; allowed: json, png"),
                           ("?fromat=png", "unknown query parameter 'fromat'; allowed: format"),
                           ("?format=png&format=json", "given 2 times"),
                           ("?num_samples=x", "not an integer")]:
        status, _, out = exchange(server, "POST", "/api/colorize" + query, img)
        assert status == 400, (query, out)
        assert message in out["error"], (query, out)
    status, resp, _ = exchange(server, "POST", "/api/colorize?format=json", img)
    assert status == 200
    assert resp.getheader("Content-Type") == "application/json"


def test_host_header_must_name_this_server(server, stub_server):
    port = server[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.2:{port}", "local host"):
        for method, body in (("GET", None), ("POST", photo_bytes(20, 20))):
            status, _, out = exchange(server, method, "/api/info" if method == "GET"
                                      else "/api/colorize", body, {"Host": host})
            assert status == 400, (host, method, out)
            assert "--allowed_hosts" in out["error"], (host, method, out)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert exchange(server, "GET", "/api/info", headers={"Host": host})[0] == 200, host
    # No Host at all, or two, is refused too.
    assert exchange(server, "GET", "/api/info", skip_host=True)[0] == 400
    sock = _raw(server, f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Host: evil.example\r\nConnection: close\r\n\r\n".encode())
    assert _answer(sock)[0].startswith(b"HTTP/1.1 400 ")
    sock.close()
    # --allowed_hosts adds names; "*" allows any.
    addr, _, _ = stub_server(allowed_hosts=("photos.lan",))
    assert exchange(addr, "GET", "/api/info", headers={"Host": "photos.lan:80"})[0] == 200
    assert exchange(addr, "GET", "/api/info", headers={"Host": "other.lan"})[0] == 400
    addr, _, _ = stub_server(allowed_hosts=("*",))
    assert exchange(addr, "GET", "/api/info", headers={"Host": "other.lan"})[0] == 200


def test_cross_origin_posts_are_refused(server):
    own = f"http://{server[0]}:{server[1]}"
    img = photo_bytes(20, 20, "PNG")
    # What a form or fetch on another site's page sends ("simple" requests, no preflight).
    for origin in ("http://evil.example", "null", own.replace("http:", "https:"),
                   f"http://localhost:{server[1]}"):
        status, _, out = exchange(server, "POST", "/api/colorize", img,
                                  {"Origin": origin, "Content-Type": "text/plain"})
        assert status == 403, (origin, out)
        assert "cross-origin" in out["error"], (origin, out)
    # The server's own page, and clients that send no Origin (curl), are served.
    assert exchange(server, "POST", "/api/colorize", img, {"Origin": own})[0] == 200
    assert exchange(server, "POST", "/api/colorize", img)[0] == 200


def _raw(addr, data: bytes) -> socket.socket:
    sock = socket.create_connection(addr, timeout=30)
    sock.sendall(data)
    return sock


def _answer(sock) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out, time.monotonic()


def test_a_body_shorter_than_its_content_length_gets_408(server):
    start = time.monotonic()
    sock = _raw(server, b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 150000\r\n\r\n" + b"x" * 100)
    out, end = _answer(sock)
    sock.close()
    assert out.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive in time" in out
    assert TIMEOUT <= end - start < TIMEOUT + 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["silent", "partial request line", "partial headers",
                                  "drip-fed headers", "idle keep-alive"])
def test_stalled_connections_are_closed_after_the_timeout(server, kind):
    head = {"silent": b"", "partial request line": b"GET /api/in",
            "partial headers": b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A",
            "drip-fed headers": b"GET /api/info HTTP/1.1\r\n",
            "idle keep-alive": b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"}[kind]
    start = time.monotonic()
    sock = _raw(server, head)
    if kind == "drip-fed headers":  # never silent for long, but the headers never end
        sock.settimeout(0.3)
        try:
            for _ in range(int(4 * TIMEOUT / 0.3)):
                sock.sendall(b"X")
                if sock.recv(1) == b"":
                    break
        except TimeoutError:
            pass
        except OSError:  # the server closed; our write or read saw it
            pass
        sock.settimeout(30)
    try:
        out, end = _answer(sock)
    except ConnectionResetError:
        out, end = b"", time.monotonic()
    sock.close()
    assert end - start < TIMEOUT + 3, kind
    if kind == "idle keep-alive":  # answered, then closed after TIMEOUT of silence
        assert out.startswith(b"HTTP/1.1 200 ")
        assert end - start >= TIMEOUT
    else:
        assert b"200 OK" not in out


def test_excess_connections_get_503_with_retry_after(stub_server):
    addr, srv, _ = stub_server(max_connections=2, timeout=20)
    stalled = [_raw(addr, b"GET /api/in") for _ in range(2)]
    deadline = time.monotonic() + 10
    while srv.open_connections < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    status, resp, out = exchange(addr, "GET", "/api/info")
    assert status == 503, out
    assert resp.getheader("Retry-After") == "2", out
    assert "--max_connections" in out["error"]
    for sock in stalled:  # once they go, the server takes new connections again
        sock.close()
    while srv.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert exchange(addr, "GET", "/api/info")[0] == 200


def test_photos_in_work_are_capped_and_small_photos_have_their_own_lane(stub_server):
    addr, srv, stub = stub_server(hold=True, max_concurrent=1, max_waiting=1,
                                  small_pixels=10_000, timeout=20)
    big, small = photo_bytes(200, 100, "PNG"), photo_bytes(50, 50, "PNG")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(exchange, addr, "POST", "/api/colorize", big)
        assert stub.entered.acquire(timeout=20)  # the one big slot is taken
        waiting = pool.submit(exchange, addr, "POST", "/api/colorize", big)
        deadline = time.monotonic() + 10
        while srv.RequestHandlerClass.service.big._waiters < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The queue is full: refused at once, not queued.
        status, resp, out = exchange(addr, "POST", "/api/colorize", big)
        assert status == 503, out
        assert resp.getheader("Retry-After") == "2", out
        assert "--max_concurrent" in out["error"]
        # A small photo does not wait behind the big ones.
        small_answer = pool.submit(exchange, addr, "POST", "/api/colorize", small)
        assert stub.entered.acquire(timeout=20)
        assert not first.done()
        assert not waiting.done()
        stub.release.set()
        assert small_answer.result(30)[0] == 200
        assert first.result(30)[0] == 200
        assert waiting.result(30)[0] == 200


def _png(w, h):
    buf = io.BytesIO()
    Image.new("L", (w, h), 128).save(buf, "PNG")
    return buf.getvalue()


def test_extreme_aspect_ratios_are_refused_before_decoding():
    """16,000,000 x 1 is within the pixel limit but was one 16-megapixel stripe (2.3 GB)."""
    service = ColorizeService(StubColorizer())  # the default limits
    data = _png(16_000_000, 1)
    assert len(data) < 100_000
    decoded = []
    real_load = service.load
    service.load = lambda im: decoded.append(im.size) or real_load(im)  # records a decode
    for w, h in ((16_000_000, 1), (1, 16_000_000), (16385, 900)):
        with pytest.raises(RequestError) as e:
            service.decode(data if (w, h) == (16_000_000, 1) else _png(w, h))
        assert e.value.status == 413, (w, h)
        assert "--max_side" in e.value.message, (w, h)
    assert decoded == []  # refused from the header: no pixel was decoded
    assert service.decode(_png(16384, 3)).size == (16384, 3)


def test_extreme_aspect_ratio_over_http(server):
    status, _, out = exchange(server, "POST", "/api/colorize", _png(100_000, 2))
    assert status == 413
    assert "--max_side" in out["error"]


def test_a_port_in_use_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "colorjax.serve", "--model=/nonexistent", f"--port={port}"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]


class HintStub:
    """A stand-in hint model: records the hints it is given, answers gray."""

    model_name, metadata, size, samples, family, uses_hints = "hinty", {"step": 1}, 16, \
        False, "regression", True

    def __init__(self):
        self.seen = []

    def colorize_photos(self, photos, num_samples=1, **kwargs):
        self.seen.append(None)
        return [[np.zeros(p.l.shape + (3,), np.float32)] for p in photos]

    def colorize(self, photo, num_samples=1, *, hints=None, **kwargs):
        self.seen.append(hints)
        return np.zeros(photo.l.shape + (3,), np.float32)


def test_hints_reach_a_hint_model_and_bad_ones_get_clear_answers():
    pytest.importorskip("colorjax.hints", reason="hint backend not landed")
    from colorjax.hints import Hint

    stub = HintStub()
    srv = make_server(stub, "127.0.0.1", 0, quiet=True)
    gen = _running(srv)
    addr = next(gen)
    try:
        assert json.loads(request(addr, "GET", "/api/info")[2])["hints"] is True
        photo = photo_bytes(40, 30)
        status, _, body = upload(addr, {"image": photo, "hints": json.dumps(
            [{"x": 3, "y": 4.5, "rgb": [255, 0, 0]}, {"x": 39, "y": 29, "rgb": "#00ff00"}])})
        assert status == 200, body
        assert json.loads(body)["hints"] == 2
        assert stub.seen[-1] == [Hint(3, 4.5, rgb=(255, 0, 0)), Hint(39, 29, rgb=(0, 255, 0))]
        for hints in ("", "[]"):  # none: the model's own colorization
            assert upload(addr, {"image": photo, "hints": hints})[0] == 200
            assert stub.seen[-1] is None
        for hints, message in [
                ('[{"x": 1, "y": 2}]', "bad hints: hints[0]: keys must be x, y and exactly one"),
                ('{"x": 1}', "bad hints: hints must be a JSON list"),
                ('[{"x": 40, "y": 2, "rgb": "#ff0000"}]', "hint 1 at x=40, y=2 is outside the "
                                                          "40x30 photo"),
                ('[{"x": 1, "y": 2, "rgb": "red"}]', "rgb='red' is not allowed"),
                (json.dumps([{"x": 1, "y": 1, "rgb": "#ffffff"}] * 257), "257 hints; at most 256")]:
            status, _, body = upload(addr, {"image": photo, "hints": hints})
            assert status == 400, body
            assert message in json.loads(body)["error"], (hints[:40], body)
    finally:
        next(gen, None)
