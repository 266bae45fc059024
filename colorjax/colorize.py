"""`python -m colorjax.colorize`: colorize your own photos and videos with an exported model
(the CLI over `colorjax.inference.colorizer.Colorizer`).

    python -m colorjax.colorize --model=EXPORT_DIR --input=FILE_OR_DIR --output=DIR \
        [--overwrite | --skip_existing] [--num_samples=N] [--size=S] [--compare]
        [--batch_size=B] [--seed=K] [--temperature=T] [--hints=FILE.json]

How a photo is colorized (any size, any mode PIL reads):

1. EXIF orientation is applied (files only). Gray photos (modes 1/L/LA/I/I;16/F, or RGB with
   three equal channels) are used as they are; colour photos are made gray first: their
   CIELAB L is kept, their colour becomes the "truth" panel of `--compare`.
   Transparent pixels are composited over white.
2. The full-resolution L is resized (bilinear, antialiased) to S x S, the model's working
   size (default: the size it was trained at). This is a plain resize of the whole photo,
   not a crop: the aspect ratio is squeezed for the network, but every pixel gets colour.
3. The predicted ab (S x S) is resized bilinearly back to the photo's size and combined with
   the photo's own full-resolution L, so the result has exactly the input's size and
   sharpness: only the colour is at the model's resolution, which the eye barely notices.

Classification models (`colorful`) decode their per-pixel distribution over ab bins by the
annealed mean at a temperature T (`--temperature`, `colorize(..., temperature=T)`; default
the export's `config.classification.temperature`): T = 1 is the mean (dull), T near 0 the
mode (vivid, patchier). T is an argument of the compiled call: a new T does not recompile.

Colour hints (models trained with `config.model.hints=True`, Zhang et al. 2017):
`colorize(image, hints=[Hint(x, y, rgb=(r, g, b)), Hint(x, y, ab=(a, b))])`, x and y in the
photo's own full-resolution pixels; `--hints=FILE.json` gives the same list as JSON,
`[{"x": 120, "y": 40, "rgb": [200, 30, 30]}, {"x": 10, "y": 5, "rgb": "#3060c0"},
{"x": 64, "y": 64, "ab": [20.0, -35.5]}]`, applied to every input photo. Each hint becomes a
small patch of the model-size hint planes (`colorjax.hints.planes_for_photo`); an sRGB
colour is turned into ab at the photo's own L there. Hints for a model trained without
them, outside the photo, or with a bad colour are one clear ValueError (CLI: one line).

Videos (`--input=film.mp4`, or folders holding .mp4 .mov .mkv .webm .avi ... files) are
colorized frame by frame, streamed, with the colour stabilised over time (`--stabilize`, on
by default; `colorjax.media.temporal`) and written to OUT/NAME.EXT with the input's frame rate,
size, timestamps and audio (`colorjax.video`, `colorjax.media.video_io`). A file that is not a
readable video, is truncated, has no video stream or frames over `--max_video_pixels` is
one line on stderr and the others go on. `--num_samples` and `--compare` apply to photos.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()

import argparse
import os
import sys

from colorjax import hints as hints_lib
from colorjax.inference.artifact import ExportError
from colorjax.inference.colorizer import Colorizer, parse_temperature
from colorjax.inference.output_files import (OUTPUT_RULES, check_outputs, interrupts_held,
                                             output_stems, output_suffixes,
                                             remove_stale_partials, save_files)
from colorjax.media.photos import (STRIPE_PIXELS, NotARegularFile, Photo, compare_strip,
                                   lab_to_rgb_striped, media_files, open_photo,
                                   photo_from_array, photo_from_pil, regular_file_problem,
                                   to_photo, to_uint8)
from colorjax.platform import runtime, xla_cpu
from colorjax.media.video_io import (MAX_VIDEO_PIXELS, VideoError, is_video_path,
                                     output_extension)

__all__ = ["Colorizer", "Hint", "main", "run", "parse_args", "Photo", "open_photo", "to_photo",
           "photo_from_array", "photo_from_pil", "output_stems", "STRIPE_PIXELS",
           "lab_to_rgb_striped"]  # the photo names: colorize's API before photos.py existed


Hint = hints_lib.Hint


def load_hints_file(path: str) -> list[hints_lib.Hint]:
    """The hints of a `--hints` JSON file (`hints.JSON_FORMAT`); ValueError, one line."""
    try:  # at most one byte over the bound is read: a huge file is refused, not loaded
        with open(os.path.expanduser(path), "rb") as f:
            text = f.read(hints_lib.MAX_JSON_BYTES + 1)
    except OSError as e:
        raise ValueError(f"--hints={path}: cannot read it: {e.strerror or e}") from None
    try:
        if len(text) > hints_lib.MAX_JSON_BYTES:
            raise ValueError(f"is over {hints_lib.MAX_JSON_BYTES:,} bytes long; at most "
                             f"{hints_lib.MAX_JSON_BYTES:,} bytes are allowed (at most "
                             f"{hints_lib.MAX_POINTS} points)")
        obj = hints_lib.parse_json(text)
    except ValueError as e:
        raise ValueError(f"--hints={path}: the file {e}") from None
    try:
        return hints_lib.hints_from_json(obj, hints_lib.MAX_POINTS)
    except ValueError as e:
        raise ValueError(f"--hints={path}: {e}") from None


def _gather_inputs(args) -> tuple[list[str], list[str], set[str], int] | str:
    """(input paths, their paths relative to --input, which of them are videos, files
    ignored), fixed once here before anything is written; or an error message."""
    if os.path.isdir(args.input):
        images, videos, ignored = media_files(args.input)
        paths = sorted(images + videos)
        rels = [os.path.relpath(p, args.input) for p in paths]
    elif os.path.isfile(args.input):
        paths, ignored, videos = [args.input], 0, [args.input] if is_video_path(args.input) else []
        rels = [os.path.basename(args.input)]
    elif os.path.lexists(args.input):  # a FIFO, a device, a symbolic link to nothing
        return (f"--input={args.input} is {regular_file_problem(args.input)}; allowed: an "
                "image or video file, or a folder of them")
    else:
        return f"--input={args.input}: no such file or directory"
    if not paths:
        return (f"no image or video files in {args.input}" +
                (f" ({ignored} files with other extensions ignored)" if ignored else ""))
    return paths, rels, set(videos), ignored


def _photo_images(colorizer, photo: Photo, abs_, args) -> list:
    """One photo's images at full size: its colorizations, then its strip (--compare)."""
    colors = [to_uint8(colorizer.finish(photo, ab)) for ab in abs_]
    return colors + ([compare_strip(photo, colors)] if args.compare else [])


def colorize_video_file(*a, **k):
    from colorjax.video import colorize_video_file as f  # cv2 and PyAV load only for videos

    return f(*a, **k)


def run(args) -> int:
    """The CLI: returns the exit status (0 when at least one photo was colorized and every
    file was written; 2 for a usage error, reported before the model loads)."""
    from colorjax.platform import progress

    args.model, args.input, args.output = (os.path.expanduser(p) for p in
                                           (args.model, args.input, args.output))
    if args.overwrite and args.skip_existing:
        print("error: --overwrite and --skip_existing exclude each other: replace the "
              "existing outputs, or keep them", file=sys.stderr)
        return 2
    gathered = _gather_inputs(args)
    if isinstance(gathered, str):
        print(f"error: {gathered}", file=sys.stderr)
        return 2
    paths, rels, videos, ignored = gathered
    try:  # the value now; whether the model has a temperature once it is loaded
        temperature = parse_temperature(args.temperature, "--temperature")
        hint_list = load_hints_file(args.hints) if args.hints else None
        stabilize_options = _stabilize_options(args) if videos else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ext = "jpg" if args.format == "jpg" else "png"
    # (An invalid --num_samples is named once the model is known; plan as for one.)
    suffixes = output_suffixes(max(args.num_samples, 1), args.compare)
    stems = output_stems(rels, suffixes)
    # A video gets one file, the colorized video, in its own container (video_io).
    files = {p: ([os.path.join(args.output, stem + output_extension(p))] if p in videos else
                 [os.path.join(args.output, f"{stem}{s}.{ext}") for s in suffixes])
             for p, stem in zip(paths, stems)}
    problem = check_outputs(args, paths, [f for fs in files.values() for f in fs])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # With --skip_existing an input whose outputs all exist is not read again, and of the
    # others only the missing files are written.
    keep = ({f for fs in files.values() for f in fs if os.path.lexists(f)}
            if args.skip_existing else set())
    todo = [p for p in paths if not all(f in keep for f in files[p])]
    kept_inputs = len(paths) - len(todo)
    # Partial files of an interrupted run, before anything of this run is written.
    removed = remove_stale_partials({os.path.dirname(f) for fs in files.values() for f in fs})
    if removed:
        print(f"removed {len(removed)} partial file(s) left by an interrupted run "
              f"(the first: {removed[0]})", flush=True)

    photo_paths = [p for p in todo if p not in videos]
    video_paths = [p for p in todo if p in videos]
    done, written, failed, skipped, videos_done = 0, 0, 0, [], 0
    finished: set[str] = set()  # inputs written (or skipped): what an interrupt leaves out
    bar, interrupted = None, False
    try:  # Ctrl-C: the summary of what was and was not written, exit status 130
        try:
            runtime.enable_compilation_cache(args.compilation_cache)  # once per machine
            xla_cpu.configure_for_export(args.model, args.precision)  # its convolutions
            # Fewer photos than --batch_size are not zero-padded to a full batch (one
            # compilation for the folder still); videos keep --batch_size.
            batch_size = (args.batch_size if video_paths
                          else min(args.batch_size, max(1, len(photo_paths))))
            colorizer = Colorizer.load(args.model, size=args.size, batch_size=batch_size,
                                       seed=args.seed, precision=args.precision)
            colorizer.check_num_samples(args.num_samples)
        except (ExportError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            colorizer.check_temperature(temperature)  # a model without one: the error names it
        except ValueError as e:
            print(f"error: --{e}", file=sys.stderr)
            return 2
        try:
            hint_list = colorizer.check_hints(hint_list)  # a model without hints: named
        except ValueError as e:
            print(f"error: --hints={args.hints}: {e}", file=sys.stderr)
            return 2
        used = temperature if temperature is not None else colorizer.temperature_default
        what = ", ".join(f"{n} {kind}" for n, kind in ((len(photo_paths), "photos"),
                                                       (len(video_paths), "videos")) if n)
        print(f"{colorizer}: {what or 'nothing'} from {args.input} -> {args.output}" +
              (f" (temperature {used:g})" if used is not None else "") +
              (f"; keeping the outputs of {kept_inputs} input(s) that exist (--skip_existing)"
               if kept_inputs else ""), flush=True)

        bar = progress.bar(len(photo_paths), "colorize", "photo", enabled=bool(photo_paths))
        compiled = False  # until the first batch has been through the model
        for start in range(0, len(photo_paths), args.batch_size):
            batch = []
            for path in photo_paths[start:start + args.batch_size]:
                try:
                    photo = open_photo(path)
                except NotARegularFile as e:  # a FIFO, a dangling symlink: never opened
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                except Exception as e:  # noqa: BLE001 - any decode failure: report, go on
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: {type(e).__name__}: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                try:  # hints apply to every photo: one smaller than a hint's place is skipped
                    hints_lib.check_in_photo(hint_list or [], *photo.size)
                except ValueError as e:
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: --hints: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                batch.append((path, photo))
            if not batch:
                continue
            # Predict the batch at the working size; then one photo at a time at full size,
            # so only one photo's full-resolution buffers are alive at once.
            small = colorizer.predict_small([p for _, p in batch], args.num_samples,
                                            fixed_batch=True, temperature=temperature,
                                            hints=hint_list)
            for i, ((path, photo), abs_) in enumerate(zip(batch, small)):
                wanted = [f for f in files[path] if f not in keep]
                images = _photo_images(colorizer, photo, abs_, args)
                with interrupts_held():  # files on disk and the summary's counts agree
                    n = save_files(images, files[path], args.format, keep,
                                   lambda m: bar.write(m, file=sys.stderr))
                    written, failed = written + n, failed + len(wanted) - n
                    if n == len(wanted):
                        done += 1
                    finished.add(path)
                del images
                batch[i] = None  # free the photo's full-resolution L before the next one
                bar.update(1)
            if not compiled:  # the first batch compiled the model: time left from now on
                progress.restart_clock(bar)
                compiled = True
        bar.close()
        for k, path in enumerate(video_paths):
            out = files[path][0]
            problem = regular_file_problem(path)
            if problem:  # a FIFO named like a video would block its reader
                skipped.append(path)
                finished.add(path)
                print(f"skipped {path}: {problem}", file=sys.stderr, flush=True)
                continue
            try:
                stats = colorize_video_file(
                    colorizer, path, out, stabilize=args.stabilize, options=stabilize_options,
                    hints=hint_list, temperature=temperature, max_pixels=args.max_video_pixels,
                    desc=f"[{k + 1}/{len(video_paths)}] {os.path.basename(path)}")
            except VideoError as e:
                skipped.append(path)
                finished.add(path)
                print(f"skipped {path}: {e}", file=sys.stderr, flush=True)
                continue
            except OSError as e:
                failed += 1
                finished.add(path)
                print(f"could not write {out}: {e.strerror or e}", file=sys.stderr, flush=True)
                continue
            videos_done, written = videos_done + 1, written + 1
            finished.add(path)
            print(f"{path} -> {out}: {stats['frames']} frames in {stats['seconds']:.1f} s "
                  f"({stats['frames'] / max(stats['seconds'], 1e-9):.1f} frames/s" +
                  (f", {stats['cuts']} scene cuts" if args.stabilize else ", not stabilised") +
                  (", audio copied" if stats["audio"] else "") + ")", flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    what = " and ".join(f"{n} {kind}(s)" for n, kind in ((done, "photo"), (videos_done, "video"))
                        if n or (kind == "photo" and not videos_done))
    left = [p for p in todo if p not in finished]
    left_photos = sum(p not in videos for p in left)
    not_done = " and ".join(f"{n} {kind}(s)" for n, kind in
                            ((left_photos, "photo"), (len(left) - left_photos, "video")) if n)
    print(("interrupted: " if interrupted else "") +
          f"colorized {what} into {args.output} ({written} file(s) written)" +
          (f"; kept the existing outputs of {kept_inputs} input(s)" if kept_inputs else "") +
          (f"; could not write {failed} file(s)" if failed else "") +
          (f"; skipped {len(skipped)} unreadable file(s)" +
           (" or photos too small for --hints" if hint_list else "") if skipped else "") +
          (f"; ignored {ignored} non-image file(s)" if ignored else "") +
          (f"; not colorized: {not_done} (rerun with --skip_existing to finish)"
           if interrupted and left else ""), flush=True)
    if interrupted:
        return 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
    return 0 if (done or videos_done or kept_inputs) and not failed else 1


def _stabilize_options(args):
    """The temporal filter's options from --temporal_blend (ValueError naming the flag)."""
    from colorjax.media.temporal import StabilizeOptions

    b = args.temporal_blend
    if not (isinstance(b, float) and 0.0 <= b <= 1.0):
        raise ValueError(f"--temporal_blend={b} is not allowed; allowed: a number in [0, 1] "
                         "(0 = no filtering, 1 = keep the previous colour wherever the "
                         "motion is reliable)")
    if args.max_video_pixels <= 0:
        raise ValueError(f"--max_video_pixels={args.max_video_pixels} must be positive")
    return StabilizeOptions(blend=b)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m colorjax.colorize",
                                description="Colorize photos with an exported colorjax model.",
                                epilog=OUTPUT_RULES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export directory (--mode=export)")
    p.add_argument("--input", required=True, help="an image or video file, or a folder of them")
    p.add_argument("--output", required=True, help="folder for the results (not the input's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (never an input)")
    p.add_argument("--skip_existing", action="store_true",
                   help="keep outputs that already exist and write only the missing ones: "
                        "resumes an interrupted run of the same command (inputs whose "
                        "outputs all exist are not read again)")
    p.add_argument("--num_samples", type=int, default=1,
                   help="colorizations per photo (VAE and diffusion models)")
    p.add_argument("--size", type=int, default=None,
                   help="working size of the model (default: the size it was trained at)")
    p.add_argument("--compare", action="store_true", help="also write gray | color (| truth) strips")
    p.add_argument("--batch_size", type=int, default=8, help="photos per model call")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampling models")
    p.add_argument("--precision", choices=("float32", "bfloat16", "bfloat16_convs"),
                   default=None,
                   help="what the network computes in (default: the export's "
                        "config.precision); bfloat16_convs (convolutions in bfloat16) is "
                        "faster on CPUs with AMX")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output format")
    p.add_argument("--compilation_cache", default=None, metavar="DIR", help=runtime.CACHE_HELP)
    p.add_argument("--temperature", default=None, metavar="T",
                   help="classification models (colorful) only: the annealed mean's "
                        "temperature, a number in (0, inf); 1 = the mean (dull), lower = "
                        "more vivid (near 0: the mode); default: the model's own "
                        "(config.classification.temperature, the paper's 0.38)")
    p.add_argument("--hints", default=None, metavar="FILE.json",
                   help="colour hints for every photo (models trained with "
                        "config.model.hints=True): a JSON list of {\"x\": X, \"y\": Y, "
                        "\"rgb\": [R, G, B]} (ints 0-255, or \"#rrggbb\") or {\"x\": X, "
                        "\"y\": Y, \"ab\": [A, B]}, x and y in the photo's own pixels")
    v = p.add_argument_group("videos (inputs with a video extension: .mp4 .mov .mkv .webm "
                             ".avi ...; colorjax.video)")
    v.add_argument("--stabilize", action=argparse.BooleanOptionalAction, default=True,
                   help="stabilise the colour over time along optical flow, restarting at "
                        "scene cuts (default: on; --no-stabilize colorizes each frame alone)")
    v.add_argument("--temporal_blend", type=float, default=0.7, metavar="W",
                   help="weight in [0, 1] of the previous frame's motion-compensated colour "
                        "where the motion is reliable (default 0.7)")
    v.add_argument("--max_video_pixels", type=int, default=MAX_VIDEO_PIXELS, metavar="N",
                   help=f"refuse videos whose frames have more pixels (default {MAX_VIDEO_PIXELS:,},"
                        " 8K UHD)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
