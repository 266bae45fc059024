"""The upload page's server: colorized answers of the input's size, clear 4xx answers for bad
requests (after which it keeps serving), several requests at once."""

import base64
import concurrent.futures
import http.client
import io
import json
import threading
import uuid

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax.colorize import Colorizer
from colorjax.serve import make_server, parse_multipart

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)

MAX_PIXELS = 300_000
MAX_UPLOAD_MB = 0.2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    srv = make_server(Colorizer.load(str(path)), "127.0.0.1", 0, quiet=True,
                      max_pixels=MAX_PIXELS, max_upload_mb=MAX_UPLOAD_MB, max_concurrent=2)
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
    assert status == 200 and ctype.startswith("text/html")
    assert b'type="file"' in body and b"unet" in body
    status, _, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200 and info["model"] == "unet" and info["samples"] is False
    assert info["max_pixels"] == MAX_PIXELS


def test_upload_gives_a_colorized_image_of_the_same_size(server):
    status, ctype, body = upload(server, {"image": photo_bytes(333, 517)})
    assert status == 200, body
    out = json.loads(body)
    assert (out["width"], out["height"], out["had_color"]) == (333, 517, True)
    color = decode_data_url(out["colors"][0])
    assert color.size == (333, 517) and color.mode == "RGB"
    assert decode_data_url(out["gray"]).size == (333, 517)

    # Raw bytes as the body and a PNG answer (for curl).
    status, ctype, body = request(server, "POST", "/api/colorize?format=png",
                                  photo_bytes(101, 99, "PNG", "L"), {"Content-Type": "image/png"})
    assert status == 200 and ctype == "image/png"
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
])
def test_bad_requests_get_clear_answers_and_the_server_keeps_serving(
        server, name, make, status, message):
    got, ctype, body = upload(server, make())
    assert got == status, (name, body)
    assert ctype == "application/json" and message in json.loads(body)["error"]
    ok, _, body = upload(server, {"image": photo_bytes(31, 17)})
    assert ok == 200 and json.loads(body)["width"] == 31


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
    assert resp.status == 413 and "--max_upload_mb" in json.loads(resp.read())["error"]
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
