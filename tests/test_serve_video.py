"""Clips through the upload server (POST /api/colorize_video), in-process over real HTTP: a
tiny clip with audio comes back as a browser-playable MP4 (H.264 yuv420p) with the same frame
count, size, frame rate and an audio stream, with or without stabilisation; every refused clip
(not a video, a photo, truncated, odd sizes, no video stream, over the size, length, frame or
pixel limits) gets its one-line message and a 4xx; no temporary file is ever left behind."""

import fractions
import json
import threading

import av
import numpy as np
import pytest

from colorjax.media import video_io
from colorjax.inference.colorizer import Colorizer
from colorjax.serve import make_server

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)
from test_serve import photo_bytes, request

MAX_VIDEO_MB = 0.1
MAX_VIDEO_SECONDS = 1.0
MAX_VIDEO_FRAMES = 20
MAX_PIXELS = 300_000
W, H, N, FPS = 64, 48, 8, 24


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips_tmp")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tmp_dir):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    srv = make_server(Colorizer.load(str(path)), "127.0.0.1", 0, quiet=True, timeout=5.0,
                      max_pixels=MAX_PIXELS, max_video_mb=MAX_VIDEO_MB,
                      max_video_seconds=MAX_VIDEO_SECONDS, max_video_frames=MAX_VIDEO_FRAMES,
                      tmp_dir=str(tmp_dir))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[:2], srv.RequestHandlerClass.service
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture
def no_leftovers(tmp_dir):
    yield
    assert list(tmp_dir.iterdir()) == []  # every request's private folder is gone


def frames(n=N, w=W, h=H, seed=0):
    """A moving gradient with some noise: compresses to a few KB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (x * 4 + i * 6) % 256
        g = (y * 5) % 256
        b = ((x + y) * 2 + i * 3) % 256
        f = np.stack([r, g, b], -1).astype(np.int16) + rng.integers(-4, 5, (h, w, 3))
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


def clip(tmp_path, name="clip.mp4", n=N, w=W, h=H, fps=FPS, audio=0.5):
    path = tmp_path / name
    video_io.write_video(str(path), frames(n, w, h), fps=fps, audio_seconds=audio)
    return path.read_bytes()


def multipart_video(data, fields=None, filename="clip.mp4"):
    boundary = "colorjaxclipboundary"
    out = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; "
           f"filename=\"{filename}\"\r\nContent-Type: video/mp4\r\n\r\n").encode() + data + b"\r\n"
    for k, v in (fields or {}).items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                ).encode()
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def post_clip(addr, data, fields=None, query="", filename="clip.mp4"):
    ctype, body = multipart_video(data, fields, filename)
    return request(addr, "POST", "/api/colorize_video" + query, body, {"Content-Type": ctype})


def check_output(tmp_path, body, n=N, w=W, h=H, fps=FPS, audio=True):
    out = tmp_path / "out.mp4"
    out.write_bytes(body)
    with av.open(str(out)) as c:
        assert "mp4" in c.format.name
        v = c.streams.video[0]
        assert v.codec_context.name == "h264"
        assert v.codec_context.pix_fmt == "yuv420p"  # what browsers play
        assert (v.codec_context.width, v.codec_context.height) == (w, h)
        assert fractions.Fraction(v.average_rate) == fps
        assert bool(c.streams.audio) == audio
        if audio:
            assert c.streams.audio[0].codec_context.name == "aac"
    got, info = video_io.read_video(str(out))
    assert got.shape == (n, h, w, 3)
    rgb = got.astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 0  # colour, not gray
    return got


def test_a_clip_comes_back_colorized_with_its_frames_size_rate_and_audio(
        server, tmp_path, no_leftovers):
    data = clip(tmp_path)
    status, ctype, body = post_clip(server, data)
    assert status == 200, body[:300]
    assert ctype == "video/mp4"
    stabilized = check_output(tmp_path, body)

    # Raw bytes as the body and stabilisation off (query): the same frames, no filter.
    status, ctype, body = request(server, "POST", "/api/colorize_video?stabilize=0", data,
                                  {"Content-Type": "video/mp4"})
    assert status == 200, body[:300]
    plain = check_output(tmp_path, body)
    assert not np.array_equal(plain, stabilized)  # the filter changed something

    # A WebM (VP9, Opus) in: an MP4 with H.264 out, its Opus audio kept; the name does not
    # matter (content decides). The form field turns stabilisation off too.
    webm = tmp_path / "clip.webm"
    video_io.write_video(str(webm), frames(), fps=FPS, audio_seconds=0.5)
    status, ctype, body = post_clip(server, webm.read_bytes(), {"stabilize": "0"},
                                    filename="film.bin")
    assert status == 200, body[:300]
    out = tmp_path / "webm_out.mp4"
    out.write_bytes(body)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "opus"
    assert video_io.read_video(str(out))[0].shape == (N, H, W, 3)


def test_info_gives_the_clip_limits(server):
    status, _, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert info["video"] is True
    assert info["max_video_mb"] == pytest.approx(MAX_VIDEO_MB, rel=1e-4)
    assert info["max_video_seconds"] == MAX_VIDEO_SECONDS
    assert info["max_video_frames"] == MAX_VIDEO_FRAMES


def _no_video_stream(tmp_path):
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        tone = np.zeros((1, 1024), np.float32)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            out.mux(a.encode(f))
        out.mux(a.encode(None))
    return path.read_bytes()


@pytest.mark.parametrize("name,make,status,message", [
    ("not a video", lambda p: b"just some text, not a film at all" * 20, 415,
     "not a video clip this server reads"),
    ("an HLS playlist", lambda p: b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
     415, "not a video clip"),
    ("a photo", lambda p: photo_bytes(64, 48), 415, "this is a photo, not a video clip"),
    ("empty", lambda p: b"", 400, "empty upload"),
    ("truncated", lambda p: clip(p)[:-3000], 400, "truncated or damaged"),
    ("truncated mkv (frames stop early)",
     lambda p: (lambda d: d[:len(d) * 2 // 3])(clip(p, "clip.mkv", n=16, audio=0)), 400,
     "truncated"),
    ("no video stream", _no_video_stream, 415, "no video stream (audio only)"),
    ("odd size", lambda p: clip(p, w=65, audio=0), 400, "65x48 pixels: an odd width or height"),
    ("too big", lambda p: np.random.default_rng(0).bytes(150_000), 413,
     "limit for clips is 0.1 MiB (--max_video_mb)"),
    ("too long", lambda p: clip(p, n=16, fps=10, audio=0), 413,
     "longer than 1 s; the limit is 1 s (--max_video_seconds)"),
    ("too many frames", lambda p: clip(p, n=21, fps=60, audio=0), 413,
     "more than 20 frames; the limit is 20 (--max_video_frames)"),
    ("too many pixels", lambda p: clip(p, n=2, w=640, h=480, audio=0), 413,
     "640x480 = 307,200 pixels; the limit is 300,000 (--max_pixels)"),
    ("bad stabilize", lambda p: (clip(p), {"stabilize": "maybe"}), 400,
     "stabilize='maybe' is not allowed"),
])
def test_refused_clips_get_their_message(server, tmp_path, no_leftovers, name, make, status,
                                         message):
    made = make(tmp_path)
    data, fields = made if isinstance(made, tuple) else (made, None)
    got, ctype, body = post_clip(server, data, fields)
    assert got == status, (name, body[:300])
    assert ctype == "application/json"
    err = json.loads(body)
    assert message in err["error"], err
    assert "\n" not in err["error"]
    # The server keeps serving.
    assert request(server, "GET", "/api/info")[0] == 200


def test_a_clip_sent_as_a_photo_is_pointed_to_the_clip_endpoint(server, tmp_path):
    from test_serve import upload

    status, _, body = upload(server, {"image": clip(tmp_path)})
    assert status == 415
    assert "this is a video clip, not a photo" in json.loads(body)["error"]


def test_protocol_errors_on_the_clip_endpoint(server):
    status, _, body = request(server, "GET", "/api/colorize_video")
    assert status == 405
    status, _, body = request(server, "POST", "/api/colorize_video?format=png", b"x")
    assert status == 400 and "unknown query parameter 'format'" in json.loads(body)["error"]
    ctype = "multipart/form-data; boundary=b"
    status, _, body = request(server, "POST", "/api/colorize_video",
                              b'--b\r\nContent-Disposition: form-data; name="image"; '
                              b'filename="x.mp4"\r\n\r\nabc\r\n--b--\r\n', {"Content-Type": ctype})
    assert status == 400 and "no file field named 'video'" in json.loads(body)["error"]


def test_a_clip_takes_a_big_lane_slot(served, tmp_path, no_leftovers):
    """While the big photos' lane is full (and its waiting room too), a clip gets 503."""
    server, service = served
    lane = service.big
    held = [lane.acquire() for _ in range(lane.slots)]
    waiting, lane.waiting = lane.waiting, 0
    try:
        status, _, body = post_clip(server, clip(tmp_path))
        assert status == 503, body[:300]
        assert "big photo(s) or clip(s) in work" in json.loads(body)["error"]
    finally:
        lane.waiting = waiting
        for _ in held:
            lane.release()
    assert post_clip(server, clip(tmp_path))[0] == 200
