"""Colorize videos with an exported model: frames in batches through the model, the colour
stabilised over time (`colorjax.media.temporal`), each frame's own full-resolution L kept.

    from colorjax.inference.colorizer import Colorizer
    from colorjax.video import colorize_frames, colorize_video_file
    for frame in colorize_frames(Colorizer.load("export/"), frames):  # RGB uint8 arrays
        frame.rgb  # (H, W, 3) uint8

`python -m colorjax.colorize --input=film.mp4` (or a folder holding videos) uses
`colorize_video_file`: streamed decode -> model -> encode with the input's timestamps and
audio (`colorjax.media.video_io`), so memory stays at one batch of frames for any length.

Each frame is colorized as a still photo would be (`Colorizer.predict_small` at the working
size), then its ab goes to the stabiliser's working resolution (the frame's aspect, long
side 256 by default), is filtered there against the previous output, and is upsampled to the
frame and combined with the frame's own L. Without stabilisation the same resizes are made,
so the two differ only by the filter. Sampling models (VAE, diffusion) use the same noise
for every batch, so a still scene does not get a new random colouring at each batch.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np

from colorjax.media import video_io
from colorjax.media.photos import (Photo, lab_to_rgb_striped, photo_from_array, resize_ab,
                             resize_plane, to_uint8)
from colorjax.media.temporal import Stabilizer, StabilizeOptions, work_size


@dataclasses.dataclass
class ColorizedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8: the frame's L with the (stabilised) colour
    ab: np.ndarray  # (h, w, 2) float32, Lab units, at the stabiliser's working resolution
    l_work: np.ndarray  # (h, w) the frame's L at that resolution
    cut: bool  # the stabiliser restarted here (first frame or a scene cut)


class FrameColorizer:
    """Colorizes the frames of one video in order, in batches; holds the stabiliser's state
    (one frame) and nothing else between batches."""

    def __init__(self, colorizer, *, stabilize: bool = True,
                 options: StabilizeOptions | None = None, hints=None,
                 temperature: float | None = None):
        self.colorizer = colorizer
        self.options = options or StabilizeOptions()
        self.stabilizer = Stabilizer(self.options) if stabilize else None
        self.hints = colorizer.check_hints(hints)
        self.temperature = colorizer.check_temperature(temperature)

    def colorize_batch(self, frames: list[np.ndarray]) -> list[ColorizedFrame]:
        """The colorized frames (RGB uint8 (H, W, 3) in, same out), in order."""
        photos = [photo_from_array(f) for f in frames]
        small = self.colorizer.predict_small(photos, fixed_batch=True, hints=self.hints,
                                             temperature=self.temperature)
        return [self._finish(p, abs_[0]) for p, abs_ in zip(photos, small)]

    def _finish(self, photo: Photo, ab_small: np.ndarray) -> ColorizedFrame:
        w, h = photo.size
        ww, wh = work_size(w, h, self.options.max_side)
        l_work = resize_plane(photo.l, ww, wh)
        ab = resize_ab(ab_small, ww, wh)
        cut = True
        if self.stabilizer is not None:
            ab, info = self.stabilizer.step(l_work, ab)
            cut = info["cut"]
        rgb = to_uint8(lab_to_rgb_striped(photo.l, resize_ab(ab, w, h)))
        return ColorizedFrame(rgb, ab, l_work, cut)


def colorize_frames(colorizer, frames: Iterable[np.ndarray], *, stabilize: bool = True,
                    options: StabilizeOptions | None = None, hints=None,
                    temperature: float | None = None,
                    batch_size: int | None = None) -> Iterator[ColorizedFrame]:
    """Colorize a sequence of RGB (or gray) uint8 frames of one video, lazily, in batches of
    `batch_size` (default: the colorizer's)."""
    fc = FrameColorizer(colorizer, stabilize=stabilize, options=options, hints=hints,
                        temperature=temperature)
    n = batch_size or colorizer.batch_size
    batch: list[np.ndarray] = []
    for f in frames:
        batch.append(np.asarray(f))
        if len(batch) == n:
            yield from fc.colorize_batch(batch)
            batch = []
    if batch:
        yield from fc.colorize_batch(batch)


def colorize_video_file(colorizer, in_path: str, out_path: str, *, stabilize: bool = True,
                        options: StabilizeOptions | None = None, hints=None,
                        temperature: float | None = None,
                        max_pixels: int = video_io.MAX_VIDEO_PIXELS,
                        max_side: int | None = None, check=None,
                        desc: str | None = None, progress: bool = True) -> dict:
    """Colorize one video file into `out_path` (same frame rate, size, timestamps and audio).

    Raises `video_io.VideoError` (one line) for a file that is not a readable video, has
    no video stream, has frames over `max_pixels` or `max_side` (each decoded frame is
    checked, not only the header: `video_io.VideoTooLarge`), or turns out truncated;
    nothing is left at `out_path` then. `check`: called before each decoded frame is kept
    and before each batch goes to the model; whatever it raises stops the work (the
    server's budget and its client's disconnection), with nothing left at `out_path`.
    `progress`: a tqdm bar on stderr (frames, frames/s, time left). Returns
    {"frames", "seconds", "cuts", "audio"}.
    """
    import av
    from tqdm import tqdm

    from colorjax import hints as hints_lib

    t0 = time.perf_counter()
    fc = FrameColorizer(colorizer, stabilize=stabilize, options=options, hints=hints,
                        temperature=temperature)
    with video_io.VideoReader(in_path, max_pixels=max_pixels, max_side=max_side) as reader:
        if fc.hints:
            try:
                hints_lib.check_in_photo(fc.hints, reader.info.width, reader.info.height)
            except ValueError as e:
                raise video_io.VideoError(f"--hints: {e}") from None
        try:
            writer = video_io.VideoWriter(out_path, reader)
        except av.error.FFmpegError as e:
            raise video_io.VideoError(f"cannot write {out_path} ({video_io.one_line(e)})") from None
        bar = tqdm(total=reader.info.num_frames, unit="frame", dynamic_ncols=True,
                   file=sys.stderr, desc=desc, leave=False, disable=not progress)
        n = colorizer.batch_size
        pending: list[tuple[np.ndarray, object, object]] = []
        count = 0

        def flush():
            nonlocal count
            if check is not None:
                check()
            out = fc.colorize_batch([f for f, _, _ in pending])
            for (_, pts, tb), frame in zip(pending, out):
                writer.write_frame(frame.rgb, pts, tb)
            count += len(pending)
            bar.update(len(pending))
            pending.clear()

        try:
            for kind, item in reader.packets():
                if kind == "audio":
                    writer.write_audio(item)
                    continue
                if check is not None:
                    check()
                pending.append(item)
                if len(pending) == n:
                    flush()
            if pending:
                flush()
            writer.commit()
        except av.error.FFmpegError as e:
            writer.abort()
            raise video_io.VideoError(f"encoding failed ({video_io.one_line(e)})") from None
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        cuts = fc.stabilizer.cuts if fc.stabilizer is not None else 0
        return {"frames": count, "seconds": time.perf_counter() - t0, "cuts": cuts,
                "audio": reader.info.has_audio}
