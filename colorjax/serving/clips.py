"""Short video clips for the upload server: checking an upload before any frame is decoded
(that it is a video at all, its size, length and codecs), and colorizing it into an MP4 a
browser plays, in a private temporary directory that is always removed.

What is refused, and why (each a `RequestError` with one line naming the limit):

* not a video (415): the upload is probed by content with FFmpeg restricted to the
  containers listed in `CONTAINERS` and to local files (``format_whitelist``,
  ``protocol_whitelist``), never by its name; a playlist (HLS, concat) that would make FFmpeg
  open other files or URLs is therefore "not a video". A photo sent here is told to go to
  ``/api/colorize``. An upload that starts like one of those containers but cannot be read
  is "truncated or damaged" (400), as is one whose frames stop early.
* no video stream (415), an audio codec an MP4 cannot hold (415);
* over ``--max_video_mb`` (413), longer than ``--max_video_seconds`` or with more than
  ``--max_video_frames`` frames (413; counted from the packets' timestamps, not the header's
  claim, by a demux pass that decodes nothing), frames over ``--max_pixels`` or a side over
  ``--max_side`` (413), the header's size and then every decoded frame's own (a stream
  may change its size midway: an MPEG-TS whose header says 64x64 can go on at 6144x6144);
* more than ``--max_clip_work_seconds`` of colorizing (413): the limits above bound the
  length, not the work (1800 frames of 16 megapixels are hours of CPU), so the work is
  stopped when its budget is spent. It also stops when the client goes away (no answer).
* odd width or height (400): browsers play H.264 only with 4:2:0 chroma, which needs even
  sides; `colorjax.media.video_io.VideoWriter` would write 4:4:4 for them, which browsers do not
  play, and padding or cropping a pixel would silently change the clip's size. The message
  says so and how to fix it.

The answer is H.264 (yuv420p) in MP4 with the clip's own timestamps (frame rate kept) and
its audio stream-copied, whatever the input container.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

from colorjax.media.photos import heif_kind
from colorjax.serving.requests import RequestError, check_frame_size

# FFmpeg demuxers a clip may be read with (its `format_whitelist`): the common camera and
# web containers; nothing that reads other files or URLs (hls, concat, image2, ...).
CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpeg", "mpegts", "ogg",
              "flv", "asf")
CONTAINER_NAMES = "MP4, MOV, MKV, WebM, AVI, MPEG, MPEG-TS, OGG, FLV or WMV"
# Audio codecs an MP4 holds (copied unchanged; browsers play aac, mp3, opus and flac).
MP4_AUDIO = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})
# How the containers above start (offset, bytes): an upload that starts so but cannot be
# opened is reported as truncated or damaged rather than as "not a video".
_MAGIC = ((4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),
          (0, b"\x1aE\xdf\xa3"), (0, b"OggS"), (0, b"FLV"), (0, b"\x00\x00\x01\xba"),
          (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"))
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_video(head: bytes) -> bool:
    """Whether bytes start like one of the `CONTAINERS` (RIFF AVI and MPEG-TS included);
    AVIF and HEIC photos, in the same container as MP4, do not."""
    if heif_kind(head):
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if len(head) >= 377 and head[0] == head[188] == head[376] == 0x47:  # TS sync bytes
        return True
    return any(head[o:o + len(m)] == m for o, m in _MAGIC)


def _looks_like_image(head: bytes) -> bool:
    return (head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or heif_kind(head) is not None)


def parse_bool(name: str, value, default: bool) -> bool:
    """A form or query flag: 1/0, true/false, on/off, yes/no (None or empty: `default`)."""
    if value in (None, ""):
        return default
    v = str(value).strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    raise RequestError(400, f"{name}={value!r} is not allowed; allowed: 1 or 0 (true/false, "
                            "on/off)")


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    container: str
    width: int
    height: int
    frames: int  # video packets with a timestamp (one frame each)
    seconds: float  # from the first frame's start to the last one's end
    fps: float | None
    audio: tuple[str, ...]  # audio codec names


@dataclasses.dataclass(frozen=True)
class ClipLimits:
    max_bytes: int
    max_seconds: float
    max_frames: int
    max_pixels: int
    max_side: int
    max_work_seconds: float = 300.0  # --max_clip_work_seconds

    def too_big(self, n: int) -> str:
        return (f"the clip is {n / (1 << 20):.1f} MiB; the limit for clips is "
                f"{self.max_bytes / (1 << 20):.1f} MiB (--max_video_mb)")


def probe_clip(path: str, limits: ClipLimits) -> ClipInfo:
    """Check the clip at `path` against `limits` without decoding a frame (one demux pass,
    stopped as soon as a limit is passed). Raises `RequestError` (400, 413, 415)."""
    import av

    with open(path, "rb") as f:
        head = f.read(512)
    if _looks_like_image(head):  # FFmpeg opens AVIF and HEIC photos as one-frame "videos"
        raise RequestError(415, "this is a photo, not a video clip: colorize it as a photo "
                                "(POST /api/colorize; the page does)")
    try:
        container = av.open(path, "r", options={"format_whitelist": ",".join(CONTAINERS),
                                                "protocol_whitelist": "file"})
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        from colorjax.media.video_io import one_line

        if looks_like_video(head):
            raise RequestError(400, f"the clip cannot be read (truncated or damaged?): "
                                    f"{one_line(e)}") from None
        if _looks_like_image(head):
            raise RequestError(415, "this is a photo, not a video clip: colorize it as a photo "
                                    "(POST /api/colorize; the page does)") from None
        raise RequestError(415, f"not a video clip this server reads: upload a "
                                f"{CONTAINER_NAMES} file") from None
    try:
        return _check(container, limits)
    except av.error.FFmpegError as e:
        from colorjax.media.video_io import one_line

        raise RequestError(400, f"the clip cannot be read (truncated or damaged?): "
                                f"{one_line(e)}") from None
    finally:
        container.close()


def _check(container, limits: ClipLimits) -> ClipInfo:
    if not container.streams.video:
        raise RequestError(415, "the file has no video stream" + (
            " (audio only)" if container.streams.audio else "") + ": upload a video clip")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    w, h = int(ctx.width or 0), int(ctx.height or 0)
    if w <= 0 or h <= 0:
        raise RequestError(400, "the clip's video stream has no frame size (damaged?)")
    check_frame_size(w, h, limits.max_pixels, limits.max_side, "each of the clip's frames")
    if w % 2 or h % 2:
        raise RequestError(400, f"the clip is {w}x{h} pixels: an odd width or height cannot be "
                                "written as H.264 4:2:0, the only kind browsers play; crop or "
                                "pad it to even sides (e.g. ffmpeg -vf "
                                "\"crop=trunc(iw/2)*2:trunc(ih/2)*2\") and upload it again")
    audio = tuple(a.codec_context.name for a in container.streams.audio)
    bad = sorted({a for a in audio if a not in MP4_AUDIO})
    if bad:
        raise RequestError(415, f"the clip's audio ({', '.join(bad)}) cannot be kept in an MP4; "
                                f"allowed: {', '.join(sorted(MP4_AUDIO))} (or remove the audio)")
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    frames, start, end = 0, None, None
    for packet in container.demux(stream):
        if packet.pts is None or not packet.size:  # the demuxer's final empty packet
            continue
        frames += 1
        t0 = float(packet.pts * packet.time_base)
        dur = float((packet.duration or 0) * packet.time_base) or (1 / fps if fps else 0.0)
        start = t0 if start is None else min(start, t0)
        end = t0 + dur if end is None else max(end, t0 + dur)
        if frames > limits.max_frames:
            raise RequestError(413, f"the clip has more than {limits.max_frames:,} frames; the "
                                    f"limit is {limits.max_frames:,} (--max_video_frames)")
        if end - start > limits.max_seconds:
            raise RequestError(413, f"the clip is longer than {limits.max_seconds:g} s; the "
                                    f"limit is {limits.max_seconds:g} s (--max_video_seconds)")
    if frames == 0:
        raise RequestError(400, "the clip has no frames (truncated or empty?)")
    return ClipInfo(container.format.name, w, h, frames, (end or 0.0) - (start or 0.0), fps,
                    audio)


class ClientGone(Exception):
    """The client that uploaded the clip went away: its work was stopped."""


def colorize_clip(colorizer, data: bytes, limits: ClipLimits, lane, *, stabilize: bool = True,
                  tmp_dir: str | None = None, client_gone=None) -> tuple[bytes, ClipInfo, dict]:
    """The uploaded clip's bytes -> (the colorized MP4's bytes, the clip's `ClipInfo`, the
    stats of `colorjax.video.colorize_video_file`). The upload and the output live in a
    private temporary directory (mode 0700) under `tmp_dir` that is removed on return and on
    every error. The colorizing holds a slot of `lane` (a `Lane`; 503 when it is full) for at
    most `limits.max_work_seconds`, and stops (`ClientGone`) as soon as `client_gone()`
    (checked between frames) says the client left. Raises `RequestError` (400, 413, 415,
    503) for what the clip or the server's load is."""
    from colorjax.video import colorize_video_file
    from colorjax.media.video_io import VideoError, VideoTooLarge

    if not data:
        raise RequestError(400, "empty upload: choose a video clip")
    if len(data) > limits.max_bytes:
        raise RequestError(413, limits.too_big(len(data)))
    with tempfile.TemporaryDirectory(prefix="colorjax-clip-", dir=tmp_dir) as tmp:
        src, out = os.path.join(tmp, "upload"), os.path.join(tmp, "color.mp4")
        with open(src, "wb") as f:
            f.write(data)
        info = probe_clip(src, limits)
        with lane:
            deadline = time.monotonic() + limits.max_work_seconds

            def check():
                if client_gone is not None and client_gone():
                    raise ClientGone("the client went away")
                if time.monotonic() > deadline:
                    raise RequestError(413, f"the clip takes more than "
                                            f"{limits.max_work_seconds:g} s to colorize; the "
                                            f"limit is {limits.max_work_seconds:g} s "
                                            "(--max_clip_work_seconds): send a shorter or "
                                            "smaller clip")

            try:
                stats = colorize_video_file(colorizer, src, out, stabilize=stabilize,
                                            max_pixels=limits.max_pixels,
                                            max_side=limits.max_side, check=check,
                                            progress=False)
            except VideoTooLarge as e:
                what = ("each of the clip's frames" if e.frame is None else
                        f"frame {e.frame} of the clip (its header says {info.width}x"
                        f"{info.height})")
                check_frame_size(e.width, e.height, limits.max_pixels, limits.max_side, what)
                raise RequestError(413, f"the clip cannot be colorized: {e}") from None
            except VideoError as e:
                raise RequestError(400, f"the clip cannot be colorized: {e}") from None
        with open(out, "rb") as f:
            return f.read(), info, stats


def available() -> bool:
    """Whether PyAV (FFmpeg) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("av") is not None
