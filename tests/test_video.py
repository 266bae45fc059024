"""Videos: `python -m colorjax.colorize` on clips keeps frame count, size, frame rate,
timestamps, audio and each frame's own L; bad files are one line each and the others go on;
the temporal stabiliser lowers flicker on a static scene, restarts at cuts and carries
colour along a pan; the flicker metric measures what it says."""

import os
import subprocess
import sys

import numpy as np
import pytest
from skimage import data as skdata

from colorjax import color
from colorjax.media import video_clips
from colorjax.media import video_io
from colorjax.inference.colorizer import Colorizer
from colorjax.metrics import flicker as flicker_lib
from colorjax.media.temporal import Stabilizer, StabilizeOptions, histogram_distance, l_histogram
from colorjax.video import colorize_frames

from test_colorize import colorizer, exported  # noqa: F401 - the tiny export's fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lab_l(rgb8):
    return color.rgb_to_lab(rgb8.astype(np.float32) / 255.0)[..., 0]


def clip(frames=10, size=(64, 48), grain=3.0, seed=0):
    """A pan then a zoom over the astronaut, a cut, a pan over the coffee cup."""
    shots = video_clips.camera_moves(skdata.astronaut(), skdata.coffee(), size,
                                     frames_per_move=max(1, frames // 3))
    return video_clips.render_clip(shots, size, grain=grain, seed=seed)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "colorjax.colorize", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def stream_facts(path):
    import av

    with av.open(path) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
    with av.open(path) as c:
        v = c.streams.video[0]
        audio = [(a.codec_context.name, a.sample_rate) for a in c.streams.audio]
        return {"frames": frames, "size": (v.codec_context.width, v.codec_context.height),
                "fps": v.average_rate, "audio": audio}


def pts_seconds(path):
    import av

    with av.open(path) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


@pytest.mark.slow
def test_cli_keeps_frames_size_rate_timestamps_audio_and_lightness(exported, tmp_path):
    frames, _ = clip(frames=10)
    src = tmp_path / "in"
    src.mkdir()
    video_io.write_video(str(src / "film.mp4"), frames, fps=12, audio_seconds=1.0)
    odd = frames[:6, :47, :63]  # odd sides: 4:4:4 chroma, exact size kept
    video_io.write_video(str(src / "odd.mkv"), odd, fps=10)
    video_io.write_video(str(src / "web.webm"), frames[:5], fps=8, audio_seconds=0.5)
    out = tmp_path / "out"
    r = run_cli(f"--model={exported[0]}", f"--input={src}", f"--output={out}",
                "--batch_size=4")
    assert r.returncode == 0, r.stderr
    assert "3 videos" in r.stdout
    assert sorted(os.listdir(out)) == ["film.mp4", "odd.mkv", "web.webm"]
    for name, n, size, fps, has_audio in (("film.mp4", len(frames), (64, 48), 12, True),
                                          ("odd.mkv", 6, (63, 47), 10, False),
                                          ("web.webm", 5, (64, 48), 8, True)):
        src_facts, out_facts = stream_facts(str(src / name)), stream_facts(str(out / name))
        assert out_facts["frames"] == n, name
        assert out_facts["size"] == size, name
        assert out_facts["fps"] == fps, name
        assert bool(out_facts["audio"]) == has_audio
        assert out_facts["audio"] == src_facts["audio"], name  # stream-copied, not re-encoded
        np.testing.assert_allclose(pts_seconds(str(out / name)), pts_seconds(str(src / name)))
    # Each output frame's L is the input frame's own L up to the codec (exact before it:
    # the next test), checked in 4:4:4 (the odd
    # size) at pixels where Lab -> sRGB did not clip the (untrained, garish) colour.
    got, _ = video_io.read_video(str(out / "odd.mkv"))
    sent, _ = video_io.read_video(str(src / "odd.mkv"))
    unclipped = ((got > 3) & (got < 252)).all(-1)
    assert unclipped.mean() > 0.3
    assert np.abs(lab_l(got) - lab_l(sent))[unclipped].mean() < 2.0  # H.264 at CRF 18: ~1.2
    lab = color.rgb_to_lab(got.astype(np.float32) / 255.0)
    assert np.abs(lab[..., 1:]).mean() > 0.5


def test_frames_keep_their_own_full_resolution_lightness(colorizer):
    frames, _ = clip(frames=6, size=(160, 96))  # larger than the 32 px model: ab upsampled
    for f, out in zip(frames, colorize_frames(colorizer, frames)):
        assert out.rgb.shape == f.shape and out.rgb.dtype == np.uint8
        unclipped = ((out.rgb > 0) & (out.rgb < 255)).all(-1)
        assert np.abs(lab_l(out.rgb) - lab_l(f))[unclipped].max() < 0.5


def test_cli_reports_each_bad_video_in_one_line_and_goes_on(exported, tmp_path):
    import av

    frames, _ = clip(frames=9, grain=0)
    src = tmp_path / "in"
    src.mkdir()
    video_io.write_video(str(src / "good.mp4"), frames, fps=12)
    (src / "text.mp4").write_text("not a video at all")
    long = np.concatenate([frames] * 4)
    video_io.write_video(str(tmp_path / "whole.mkv"), long, fps=12, audio_seconds=1)
    data = (tmp_path / "whole.mkv").read_bytes()
    (src / "cut_short.mkv").write_bytes(data[:len(data) // 2])
    with av.open(str(src / "sound.mp4"), "w") as c:  # audio only
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            c.mux(a.encode(f))
        c.mux(a.encode(None))
    video_io.write_video(str(src / "wide.mp4"), np.zeros((2, 64, 128, 3), np.uint8), fps=5)
    out = tmp_path / "out"
    r = run_cli(f"--model={exported[0]}", f"--input={src}", f"--output={out}",
                "--max_video_pixels=5000")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("skipped")]
    assert len(lines) == 4, r.stderr
    by_file = {ln.split(":")[0].split(os.sep)[-1]: ln for ln in lines}
    assert "not a readable video" in by_file["text.mp4"]
    assert "truncated" in by_file["cut_short.mkv"]
    assert "no video stream" in by_file["sound.mp4"]
    assert "over the limit of 5,000 pixels" in by_file["wide.mp4"]
    assert sorted(os.listdir(out)) == ["good.mp4"]  # nothing half-written is left
    assert stream_facts(str(out / "good.mp4"))["frames"] == len(frames)
    assert r.returncode == 0  # as for unreadable photos: the good one was colorized


def size_switching_ts(path, first=(64, 64), second=(640, 640), n=6):
    """An MPEG-TS (MPEG-2 video) whose header says `first` (w, h) and whose stream goes
    on at `second` after `n` frames: two encodes, one after the other in one file, as a
    broadcast capture changes resolution."""
    import io

    import av

    def segment(w, h, pts0):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as c:
            s = c.add_stream("mpeg2video", rate=24)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            y, x = np.mgrid[0:h, 0:w]
            for i in range(n):
                rgb = np.stack([(x * 3 + i * 9) % 256, (y * 2) % 256, (x + y) % 256], -1)
                f = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
                f.pts = pts0 + i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        return buf.getvalue()

    path.write_bytes(segment(*first, 0) + segment(*second, n))
    return path


def test_every_decoded_frame_is_checked_not_only_the_header(tmp_path):
    """The header says 64x64 (within the limit), the stream goes on at 640x640: the reader
    stops at the first such frame, before converting it, with a `VideoTooLarge` line."""
    path = size_switching_ts(tmp_path / "switch.ts")
    with video_io.VideoReader(str(path), max_pixels=5000) as r:
        assert (r.info.width, r.info.height) == (64, 64)
        sizes = []
        with pytest.raises(video_io.VideoTooLarge) as e:
            for kind, item in r.packets():
                sizes.append(item[0].shape[:2])
    assert set(sizes) == {(64, 64)}
    assert (e.value.width, e.value.height, e.value.frame) == (640, 640, len(sizes) + 1)
    assert "is 640x640, over the limit of 5,000 pixels" in str(e.value)
    assert "header says 64x64" in str(e.value) and "\n" not in str(e.value)
    with video_io.VideoReader(str(path), max_pixels=10**6, max_side=100) as r:
        with pytest.raises(video_io.VideoTooLarge, match="a side over the limit of 100"):
            list(r.packets())
    # Within the limits a size change is colorized (the writer scales to the header's size).
    with video_io.VideoReader(str(path), max_pixels=10**6) as r:
        assert {item[0].shape[:2] for kind, item in r.packets()} == {(64, 64), (640, 640)}


def test_cli_skips_a_video_whose_stream_outgrows_its_header(exported, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    size_switching_ts(src / "switch.ts")
    video_io.write_video(str(src / "good.mp4"), np.zeros((3, 32, 32, 3), np.uint8), fps=6)
    out = tmp_path / "out"
    r = run_cli(f"--model={exported[0]}", f"--input={src}", f"--output={out}",
                "--max_video_pixels=5000")
    skipped = [ln for ln in r.stderr.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 1 and "switch.ts" in skipped[0], r.stderr
    assert "640x640, over the limit of 5,000 pixels" in skipped[0], r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(os.listdir(out)) == ["good.mp4"]  # nothing half-written is left
    assert r.returncode == 0


@pytest.mark.slow
def test_cli_never_replaces_an_existing_video_without_overwrite(exported, tmp_path):
    frames, _ = clip(frames=6, grain=0)
    video_io.write_video(str(tmp_path / "a.mp4"), frames, fps=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"precious")
    r = run_cli(f"--model={exported[0]}", f"--input={tmp_path / 'a.mp4'}", f"--output={out}")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (out / "a.mp4").read_bytes() == b"precious"
    r = run_cli(f"--model={exported[0]}", f"--input={tmp_path / 'a.mp4'}", f"--output={out}",
                "--overwrite", "--no-stabilize")
    assert r.returncode == 0, r.stderr
    assert "not stabilised" in r.stdout
    assert stream_facts(str(out / "a.mp4"))["frames"] == len(frames)


def test_bad_temporal_blend_is_named(exported, tmp_path):
    frames, _ = clip(frames=3, grain=0)
    video_io.write_video(str(tmp_path / "a.mp4"), frames, fps=6)
    r = run_cli(f"--model={exported[0]}", f"--input={tmp_path / 'a.mp4'}",
                f"--output={tmp_path / 'o'}", "--temporal_blend=1.5")
    assert r.returncode == 2
    assert "--temporal_blend=1.5 is not allowed; allowed: a number in [0, 1]" in r.stderr


def flicker_of(colorizer, frames, flows, stabilize):
    out = list(colorize_frames(colorizer, frames, stabilize=stabilize, batch_size=4))
    truth = [color.rgb_to_lab(f.astype(np.float32) / 255.0) for f in frames]
    return flicker_lib.flicker([o.ab for o in out], truth, flows), out


def test_stabilisation_lowers_flicker_on_a_static_scene(colorizer):
    shot = video_clips.static_shot(skdata.astronaut(), (64, 48), frames=12)
    frames, flows = video_clips.render_clip([shot], (64, 48), grain=6.0, seed=1)
    raw, _ = flicker_of(colorizer, frames, flows, stabilize=False)
    steady, out = flicker_of(colorizer, frames, flows, stabilize=True)
    assert raw > 0.05  # grain makes the per-frame prediction flicker
    assert steady < 0.5 * raw, (steady, raw)
    assert [o.cut for o in out] == [True] + [False] * 11


def test_stabiliser_restarts_at_a_cut_and_carries_colour_along_a_pan():
    frames, flows = clip(frames=12, size=(96, 64), grain=0)
    cut_at = [t for t, f in enumerate(flows) if f is None]
    assert cut_at == [0, 9]
    ls = [color.rgb_to_lab(f.astype(np.float32) / 255.0)[..., 0] for f in frames]
    rng = np.random.default_rng(0)
    truth_ab = [color.rgb_to_lab(f.astype(np.float32) / 255.0)[..., 1:] for f in frames]
    stab = Stabilizer(StabilizeOptions(blend=0.8))
    outs, infos = [], []
    for t, (l, ab) in enumerate(zip(ls, truth_ab)):
        noisy = (ab + rng.normal(0, 4.0, ab.shape)).astype(np.float32)
        o, info = stab.step(l, noisy)
        outs.append(o)
        infos.append(info)
        if info["cut"]:  # nothing is carried across a cut: the prediction as it is
            np.testing.assert_array_equal(o, noisy)
    assert [i["cut"] for i in infos] == [t in cut_at for t in range(len(frames))]
    assert stab.cuts == 1
    # Along the pan, most pixels are carried, and the noise averages out.
    assert min(i["reliable"] for i, t in zip(infos, range(len(frames))) if t not in cut_at) > 0.5
    raw_error = 4.0 * np.sqrt(2 / np.pi)  # E|N(0, 4^2)|: the prediction's own error
    late = [np.abs(outs[t] - truth_ab[t]).mean() for t in (7, 8)]
    assert max(late) < 0.6 * raw_error, late


def test_cut_detection_uses_the_l_histogram():
    a = np.full((32, 32), 20.0, np.float32)
    b = np.full((32, 32), 80.0, np.float32)
    assert histogram_distance(l_histogram(a), l_histogram(a)) == 0
    assert histogram_distance(l_histogram(a), l_histogram(b)) == 1.0
    stab = Stabilizer()
    ab = np.zeros((32, 32, 2), np.float32)
    assert stab.step(a, ab)[1]["cut"]
    assert not stab.step(a, ab + 1)[1]["cut"]
    assert stab.step(b, ab)[1]["cut"]


def test_flicker_metric_on_known_motion():
    frames, flows = clip(frames=9, size=(64, 48), grain=0)
    truth = [color.rgb_to_lab(f.astype(np.float32) / 255.0) for f in frames]
    # The truth's own colour, warped along the exact motion, barely changes ...
    assert flicker_lib.flicker([t[..., 1:] for t in truth], truth, flows) < 1.5
    # ... and a colour that jumps by (3, 4) every frame flickers by 5.
    jumping = [t[..., 1:] + (k % 2) * np.array([3.0, 4.0], np.float32)
               for k, t in enumerate(truth)]
    assert abs(flicker_lib.flicker([np.full_like(j, 0) + (k % 2) * np.array([3.0, 4.0])
                                    for k, j in enumerate(jumping)], truth, flows) - 5.0) < 1e-4


def test_bad_stabilise_options_are_named():
    with pytest.raises(ValueError, match=r"blend=2 is not allowed; allowed: a number in \[0.0, 1.0\]"):
        StabilizeOptions(blend=2)


def test_a_phone_videos_rotation_is_kept(colorizer, tmp_path):
    import av

    from colorjax.video import colorize_video_file

    src, out = tmp_path / "phone.mp4", tmp_path / "out" / "phone.mp4"
    frames, _ = clip(frames=4, grain=0)
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(90)  # as phones record portrait video
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    stats = colorize_video_file(colorizer, str(src), str(out), progress=False)
    assert stats["frames"] == len(frames)
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
        assert first.rotation == 90 and (first.width, first.height) == (64, 48)
