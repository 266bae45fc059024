"""The page's files and what the server gives the page, without a browser: the HTML, CSS and
JS served from the package's static files (and shipped in the wheel), the example photos,
the export's evaluation against gray in words, and a quiet log for ordinary visits."""

import io
import json
import pathlib
import socket
import struct
import threading
import time
import tomllib
from fnmatch import fnmatch

import numpy as np
import pytest
from PIL import Image

from colorjax.inference.colorizer import Colorizer
from colorjax.serve import make_server
from colorjax.serving import examples, model_eval, page

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)
from test_serve import request

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    srv = make_server(Colorizer.load(str(path)), "127.0.0.1", 0, quiet=False, timeout=TIMEOUT)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[:2]
    srv.shutdown()
    srv.server_close()


def test_the_page_files_are_package_data():
    """Every file of colorjax/serving/static/ is matched by pyproject's package-data, so an
    installed wheel serves the same page as the checkout."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["colorjax.serving"]
    static = ROOT / "colorjax" / "serving" / "static"
    files = sorted(p.relative_to(static.parent).as_posix() for p in static.rglob("*")
                   if p.is_file())
    assert {"static/index.html", "static/page.css", "static/page.js"} <= set(files)
    missing = [f for f in files if not any(fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"not in the wheel: {missing}"


def test_the_page_and_its_files_are_served(server):
    status, ctype, body = request(server, "GET", "/")
    assert status == 200 and ctype.startswith("text/html")
    html = body.decode()
    assert '<link rel="stylesheet" href="page.css">' in html
    assert '<script src="page.js"></script>' in html
    assert "__INFO__" not in html and "__TITLE__" not in html
    for name, kind in (("page.css", "text/css"), ("page.js", "text/javascript")):
        status, ctype, body = request(server, "GET", "/" + name)
        assert status == 200 and ctype.startswith(kind), (name, status, ctype)
        assert body == (page.STATIC / name).read_bytes()
    # Only those names: nothing else of the package (or the disk) is reachable.
    for path in ("/index.html.bak", "/static/page.js", "/page.py", "/../page.js",
                 "/examples/../page.py", "/examples/astronaut.png"):
        assert request(server, "GET", path)[0] == 404, path


def test_info_is_embedded_as_json_that_cannot_end_its_script_element():
    info = {"model": "x</script><script>alert(1)</script><!--", "step": 3}
    html = page.render_page(info)
    start = html.index('<script id="info" type="application/json">') + 42
    data = html[start:html.index("</script>", start)]
    assert "<" not in data
    assert json.loads(data) == info
    assert "<title>colorjax: x&lt;/script&gt;" in html


def test_example_photos_come_from_scikit_image_as_small_jpegs(server):
    info = json.loads(request(server, "GET", "/api/info")[2])
    names = [e["name"] for e in info["examples"]]
    assert names == ["astronaut", "coffee", "chelsea", "rocket"]
    for ex in info["examples"]:
        assert ex["url"] == f"examples/{ex['name']}.jpg" and ex["caption"]
        status, ctype, body = request(server, "GET", "/" + ex["url"])
        assert status == 200 and ctype == "image/jpeg", ex
        im = Image.open(io.BytesIO(body))
        assert im.format == "JPEG" and im.mode == "RGB"
        source = Image.open(examples._source(ex["name"])).convert("RGB")
        assert max(im.size) == min(max(source.size), examples.LONGEST_SIDE), im.size
        assert len(body) < 150_000
        # The installed package's own photo, scaled: the same picture.
        diff = np.abs(np.asarray(source.resize(im.size), np.float32) - np.asarray(im))
        assert diff.mean() < 6, (ex["name"], diff.mean())
    assert request(server, "GET", "/examples/moon.jpg")[0] == 404


def test_the_exports_own_evaluation_in_words(server):
    """/api/info carries the export's table (metadata.json) against gray, in words."""
    info = json.loads(request(server, "GET", "/api/info")[2])
    ev = info["evaluation"]  # the tiny export: SSIM 0.5 against gray's 0.4
    assert ev["better"] == ["ssim"] and ev["worse"] == [] and ev["total"] == 1
    assert ev["words"] == ("On its validation photos, this model is better than leaving "
                           "them gray on 1 of 1 metric: SSIM 0.500 (gray 0.400).")


# A real run's table (the demo's unet after a few steps), as metadata.json holds it.
TABLE = {
    "unet": {"ciede2000": 16.1618, "colorfulness": 13.68, "colorfulness_true": 30.34,
             "delta_e76": 20.9184, "loss": 0.027545, "lpips": 0.176171, "psnr": 23.2034,
             "ssim": 0.836199, "auc": 0.860533, "auc_rebalanced": 0.7799, "num_examples": 8.0},
    "gray baseline (ab = 0)": {"ciede2000": 11.8884, "colorfulness": 0.0024,
                               "colorfulness_true": 30.34, "delta_e76": 18.8864,
                               "loss": 0.029575, "lpips": 0.176888, "psnr": 24.0661,
                               "ssim": 0.899075, "auc": 0.874060, "auc_rebalanced": 0.769211,
                               "num_examples": 8.0}}


def test_evaluation_words_name_every_metric_with_both_figures():
    meta = {"model": "unet", "step": 6,
            "metrics": {"file": "eval/validation_step_6.json", "table": TABLE}}
    ev = model_eval.summary(meta)
    assert ev["images"] == 8 and ev["split"] == "validation" and ev["total"] == 8
    assert ev["words"] == (
        "On its 8 validation photos, this model is better than leaving them gray on 2 of 8 "
        "metrics: rebalanced AUC 0.780 (gray 0.769), loss 0.0275 (gray 0.0296). It is worse "
        "on 5: CIEDE2000 16.2 (gray 11.9), ΔE76 20.9 (gray 18.9), PSNR 23.2 dB (gray 24.1 dB), "
        "SSIM 0.836 (gray 0.899), AUC 0.861 (gray 0.874). About the same on 1: LPIPS 0.176 "
        "(gray 0.177).")
    # A table of an earlier step than the export's says so.
    older = dict(meta, step=9)
    assert model_eval.summary(older)["words"].startswith("On its 8 validation photos (at step 6),")
    # No table, a table without gray, a damaged one: nothing to say.
    for metrics in (None, {}, {"table": {"unet": TABLE["unet"]}}, {"table": "x"},
                    {"table": {"unet": {"ssim": "high"}, "gray baseline (ab = 0)": {"ssim": 1}}}):
        assert model_eval.summary({"model": "unet", "metrics": metrics}) is None, metrics


def _silent_for(sock, seconds):
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        return got, False
    return got, True  # closed by the server


def test_ordinary_visits_log_no_errors(server, capfd):
    """A browser keeps a connection open after its requests and opens spare ones it may
    never use: when they idle out after --timeout, the log says nothing about them."""
    capfd.readouterr()
    keep = socket.create_connection(server)
    keep.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    spare = socket.create_connection(server)  # a preconnect: never used
    start = time.monotonic()
    answer, closed = _silent_for(keep, TIMEOUT + 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and closed
    assert _silent_for(spare, TIMEOUT + 5) == (b"", True)
    assert time.monotonic() - start >= TIMEOUT
    keep.close()
    spare.close()
    time.sleep(0.2)
    log = capfd.readouterr().err
    assert '"GET /api/info HTTP/1.1" 200' in log  # the access log is on
    assert [line for line in log.splitlines() if "/api/info" not in line] == [], log


def test_a_request_the_client_cancels_is_no_error(server, capfd):
    """The page aborts a request that a newer one replaces (another example, a moved hint):
    the server finds the connection reset when it answers. One calm access-log line, no
    "internal error", no 500, no "connection lost"; the server keeps serving."""
    from test_serve import multipart, photo_bytes

    ctype, body = multipart({"image": photo_bytes(1500, 1000)})  # seconds of work: a late answer
    capfd.readouterr()
    for _ in range(2):
        sock = socket.create_connection(server)
        sock.sendall(f"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     f"{ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.05)
        # Closed with a reset, as a browser's abort does: the answer meets a reset socket.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    log, deadline = "", time.monotonic() + 120
    while log.count('"POST /api/colorize HTTP/1.1" 200') < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # until both answers were begun (the status line is logged first)
        log += capfd.readouterr().err
    time.sleep(0.5)
    assert request(server, "GET", "/api/info")[0] == 200
    log += capfd.readouterr().err
    assert "the client closed the connection before its answer" in log, log
    for bad in ("internal error", '" 500 ', "connection lost", "Traceback"):
        assert bad not in log, log
