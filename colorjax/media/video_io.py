"""Reading and writing video files, streamed, with PyAV (FFmpeg's libraries in a PyPI wheel).

`VideoReader` decodes a file's first video stream frame by frame as 8-bit RGB and passes
its audio packets through untouched; `VideoWriter` encodes RGB frames with the input's own
timestamps (so the frame rate, constant or variable, is kept exactly) and muxes the audio
packets as they come. Neither holds more than one frame: a film of any length streams.

Why PyAV rather than piping raw frames through an `ffmpeg` binary (imageio-ffmpeg): one
process demuxes video and audio together, so the audio is stream-copied in the same pass
with its own timestamps, and decode errors arrive as Python exceptions naming the file.

Output codecs: H.264 (libx264, CRF 18: visually lossless for the eye, about 1/20 of raw)
in .mp4/.mov/.m4v/.mkv, VP9 in .webm; other containers (.avi, .mpg, ...) are written as
.mkv, which holds any audio codec unchanged. Sizes with an odd side use 4:4:4 chroma (4:2:0
needs even sides), so the output has exactly the input's size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import os
from collections.abc import Iterator

import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg",
                              ".mpeg", ".wmv", ".flv", ".ogv", ".3gp", ".ts", ".mts"})
# Containers written as they are; any other input container becomes .mkv.
_CODEC_OF_CONTAINER = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264",
                       ".mkv": "libx264", ".webm": "libvpx-vp9"}
# A frame bigger than this (8K UHD) is refused: one frame's float buffers alone would be
# several GB. `--max_video_pixels` raises it.
MAX_VIDEO_PIXELS = 7680 * 4320


# FFmpeg may open nothing but the local file itself: a playlist (HLS, concat) named like a
# video cannot make it read URLs.
LOCAL_ONLY = {"protocol_whitelist": "file"}


class VideoError(ValueError):
    """A file that cannot be read or written as a video; the message is one line."""


class VideoTooLarge(VideoError):
    """Frames over the pixel or side limit: `width` x `height` at frame `frame` (1-based;
    None: the size the stream's header declares)."""

    def __init__(self, message: str, width: int, height: int, frame: int | None):
        super().__init__(message)
        self.width, self.height, self.frame = width, height, frame


def is_video_path(name: str) -> bool:
    """True for file names with one of `VIDEO_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def output_extension(input_path: str) -> str:
    """The extension the colorized copy of `input_path` is written with."""
    ext = os.path.splitext(input_path)[1].lower()
    return ext if ext in _CODEC_OF_CONTAINER else ".mkv"


def one_line(e: BaseException) -> str:
    """An exception as one line; FFmpeg's errors without their errno and file name."""
    text = getattr(e, "strerror", None) if type(e).__module__.startswith("av") else None
    return " ".join(str(text or e).split()) or type(e).__name__


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: fractions.Fraction | None  # the stream's average frame rate (None if unknown)
    num_frames: int | None  # as the container declares it (or estimated from duration)
    has_audio: bool


class VideoReader:
    """The first video stream of a file, decoded as RGB frames; its audio passed through.

    Use as a context manager. `info` is read on opening; `packets()` yields, in file order,
    ("frame", (rgb uint8 (H, W, 3), pts, time_base)) and ("audio", packet) items; decoding
    errors become `VideoError`s. A video with fewer decodable frames than it declares is
    reported as truncated (`VideoError`) when the stream ends.

    `max_pixels` (and `max_side`, None: any) bound every frame, the header's size on
    opening and each decoded frame's own before it is converted: a stream may change its
    size midway (an MPEG-TS whose header says 64x64 can go on at 6144x6144), so the header
    alone bounds nothing. Over the limit: `VideoTooLarge`.
    """

    def __init__(self, path: str, max_pixels: int = MAX_VIDEO_PIXELS,
                 max_side: int | None = None):
        import av

        self.path, self.max_pixels, self.max_side = path, int(max_pixels), max_side
        try:
            self.container = av.open(path, "r", options=LOCAL_ONLY)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(f"not a readable video ({one_line(e)})") from None
        try:
            if not self.container.streams.video:
                raise VideoError("has no video stream" + (
                    " (audio only)" if self.container.streams.audio else ""))
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the model
            ctx = self.stream.codec_context
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            if width <= 0 or height <= 0:
                raise VideoError("its video stream has no frame size (not decodable)")
            self._check_size(width, height, None)
            self.audio = list(self.container.streams.audio)
            rate = self.stream.average_rate or self.stream.guessed_rate
            frames = int(self.stream.frames or 0) or None
            if frames is None and rate:  # mkv, webm: estimated from the duration
                start = float((self.stream.start_time or 0) * self.stream.time_base)
                end = self._declared_end()
                frames = int(round((end - start) * float(rate))) or None if end else None
            self.info = VideoInfo(width, height, fractions.Fraction(rate) if rate else None,
                                  frames, bool(self.audio))
            self.rotation = self._first_frame_rotation(path)
        except BaseException:
            self.container.close()
            raise

    @staticmethod
    def _first_frame_rotation(path: str) -> int:
        """The display rotation (degrees) phones record in the stream's side data: frames
        decode unrotated, and the writer keeps the same rotation, so players show the
        colorized video the way they show the input. Read from the first frame (PyAV
        exposes it on frames), in its own short-lived demuxer: the main one stays at the
        start of the file."""
        import av

        try:
            with av.open(path, "r", options=LOCAL_ONLY) as c:
                for frame in c.decode(video=0):
                    return int(round(getattr(frame, "rotation", 0) or 0))
        except av.error.FFmpegError:
            pass  # reported, in one line, when the frames are read
        return 0

    def _check_size(self, width: int, height: int, frame: int | None) -> None:
        """`VideoTooLarge` for frames over `max_pixels` or `max_side` (`frame` None: the
        header's size)."""
        what = (f"frames of {width}x{height} are" if frame is None else
                f"frame {frame} is {width}x{height},")
        header = ("" if frame is None else
                  f"; the stream's header says {self.info.width}x{self.info.height}")
        if width * height > self.max_pixels:
            raise VideoTooLarge(f"{what} over the limit of {self.max_pixels:,} pixels "
                                f"(--max_video_pixels raises it){header}", width, height, frame)
        if self.max_side is not None and max(width, height) > self.max_side:
            raise VideoTooLarge(f"{what} a side over the limit of {self.max_side:,} pixels"
                                f"{header}", width, height, frame)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.container.close()

    def packets(self) -> Iterator[tuple[str, object]]:
        import av

        decoded, last_time = 0, None
        try:
            for packet in self.container.demux(self.stream, *self.audio):
                if packet.stream.type == "audio":
                    if packet.dts is not None:  # the demuxer's final empty packet has none
                        yield "audio", packet
                    continue
                for frame in packet.decode():
                    decoded += 1
                    if (frame.width, frame.height) != (self.info.width, self.info.height):
                        self._check_size(frame.width, frame.height, decoded)
                    if frame.pts is not None:
                        last_time = float(frame.pts * frame.time_base)
                    yield "frame", (frame.to_ndarray(format="rgb24"), frame.pts,
                                    frame.time_base)
        except av.error.FFmpegError as e:
            raise VideoError(f"decoding failed after {decoded} frames ({one_line(e)})") from None
        if decoded == 0:
            raise VideoError("no decodable frames (truncated or empty)")
        # Cut short? Containers that declare a frame count (mp4, mov) do so exactly, and
        # most declare a duration in their header (mkv, webm too). A few frames of
        # tolerance: edit lists and rounding can hide one or two.
        declared = int(self.stream.frames or 0)
        if declared and decoded < declared - 2:
            raise VideoError(f"truncated: {decoded} of its {declared} frames decode")
        end = self._declared_end()
        fps = float(self.info.fps or 0)
        if end and fps and last_time is not None and last_time + 3.0 / fps < end:
            raise VideoError(f"truncated: its frames stop at {last_time:.2f} s of the "
                             f"{end:.2f} s it declares")

    def _declared_end(self) -> float | None:
        """Seconds the video stream (or the container) says it lasts, from its start."""
        s = self.stream
        if s.duration:
            return float((s.duration + (s.start_time or 0)) * s.time_base)
        tag = s.metadata.get("DURATION") or s.metadata.get("duration")  # mkv: "HH:MM:SS.frac"
        if tag:
            try:
                h, m, sec = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                pass
        if self.container.duration and not self.audio:  # audio may outlast the video
            return (self.container.duration + (self.container.start_time or 0)) / 1e6
        return None


def add_video_stream(container, ext: str, rate, width: int, height: int):
    """The video stream of an output `container` for extension `ext` (`_CODEC_OF_CONTAINER`),
    4:2:0 chroma, or 4:4:4 where a side is odd (4:2:0 needs even sides)."""
    stream = container.add_stream(_CODEC_OF_CONTAINER.get(ext, "libx264"), rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    return stream


class VideoWriter:
    """Encodes RGB frames into `path` (written as a hidden temporary file beside it and
    renamed into place by `commit()`, so a failed or interrupted run leaves no half-written
    video), copying the reader's audio streams unchanged."""

    def __init__(self, path: str, reader: VideoReader, crf: int = 18):
        import av

        self.path = path
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        ext = os.path.splitext(path)[1].lower()
        self.tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp{ext}")
        self.container = av.open(self.tmp, "w")
        try:
            info = reader.info
            self.stream = add_video_stream(self.container, ext, info.fps or 25, info.width,
                                           info.height)
            codec = self.stream.codec_context.name
            # The input's own timestamps, in its own time base: frame timing is kept exactly.
            self.stream.time_base = reader.stream.time_base
            self.stream.codec_context.time_base = reader.stream.time_base
            self.stream.options = ({"crf": str(crf), "preset": "medium"} if codec == "libx264"
                                   else {"crf": str(crf + 14), "b": "0"})
            if reader.rotation:
                self.stream.set_display_rotation(reader.rotation)
            self.audio = {a.index: self.container.add_stream_from_template(a)
                          for a in reader.audio}
        except BaseException:
            self.abort()
            raise

    def write_frame(self, rgb: np.ndarray, pts, time_base) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.stream.encode(frame))

    def write_audio(self, packet) -> None:
        packet.stream = self.audio[packet.stream.index]
        self.container.mux(packet)

    def commit(self) -> None:
        """Flush the encoder, close the file and move it into place."""
        self.container.mux(self.stream.encode(None))
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def write_video(path: str, frames, fps: float = 24, audio_seconds: float = 0.0,
                crf: int = 18) -> None:
    """Write RGB uint8 frames (N, H, W, 3) to `path` (H.264 in .mp4/.mkv/.mov, VP9 in .webm),
    with `audio_seconds` of a 440 Hz AAC tone if > 0: test clips and benchmark inputs."""
    import av

    frames = np.asarray(frames, np.uint8)
    ext = os.path.splitext(path)[1].lower()
    with av.open(path, "w") as out:
        v = add_video_stream(out, ext, fractions.Fraction(fps).limit_denominator(1001),
                             frames.shape[2], frames.shape[1])
        v.options = {"crf": str(crf)} if ext != ".webm" else {"crf": "30", "b": "0"}
        a = None
        if audio_seconds > 0:
            a = out.add_stream("aac" if ext != ".webm" else "libopus", rate=48000)
            a.layout = "mono"
        for f in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(v.encode(None))
        if a is not None:
            rate, n = 48000, int(round(audio_seconds * 48000))
            fmt = a.codec_context.format.name  # aac: fltp, opus: flt or s16
            step = a.codec_context.frame_size or 1024
            t = np.arange(n) / rate
            tone = 0.2 * np.sin(2 * np.pi * 440 * t)
            tone = (tone * 32767).astype(np.int16) if fmt.startswith("s16") else tone.astype(
                np.float32)
            for i in range(0, n - step + 1, step):
                chunk = av.AudioFrame.from_ndarray(tone[None, i:i + step], format=fmt,
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = rate, i
                out.mux(a.encode(chunk))
            out.mux(a.encode(None))


def read_video(path: str, max_frames: int | None = None) -> tuple[np.ndarray, VideoInfo]:
    """All frames of a (short) video as RGB uint8 (N, H, W, 3), with its `VideoInfo`."""
    frames = []
    with VideoReader(path) as r:
        for kind, item in r.packets():
            if kind == "frame":
                frames.append(item[0])
                if max_frames and len(frames) >= max_frames:
                    break
        return np.stack(frames), r.info
