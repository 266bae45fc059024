"""Colorizing photos: any size and mode, full-resolution L kept, the CLI over a folder,
samples for models that sample, clear errors; the CLI never touches its inputs, names its
outputs uniquely and replaces none without --overwrite."""

import hashlib
import io
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax import color
from colorjax.colorize import main
from colorjax.inference.output_files import output_stems
from colorjax.inference.colorizer import Colorizer
from colorjax.media.photos import Photo, open_photo, to_photo
from colorjax.objectives.base import Objective

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")


@pytest.fixture(scope="module")
def colorizer(exported):
    return Colorizer.load(str(exported[0]), batch_size=4)


def astronaut(w=517, h=333):
    """A real colour photograph at an odd size."""
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR))


def lab_l(rgb8):
    return color.rgb_to_lab(rgb8.astype(np.float32) / 255.0)[..., 0]


def _unclipped(rgb8):
    """Pixels no channel of which sits at 0 or 255: there Lab -> sRGB did not clip, so the
    output's L is exactly the L it was given (up to 8-bit rounding)."""
    return ((rgb8 > 0) & (rgb8 < 255)).all(-1)


def test_odd_size_in_same_size_out_with_the_inputs_own_lightness(colorizer):
    rgb = astronaut()  # 333 x 517
    out = colorizer.colorize(rgb)
    assert out.shape == (333, 517, 3)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() > 0
    # The output is the input's own full-resolution L with the predicted ab upsampled from
    # 32 x 32: exactly that composition, whatever the (untrained) weights predict ...
    photo = to_photo(rgb)
    ab_full = colorizer.predict_photos([photo])[0][0]
    assert ab_full.shape == (333, 517, 2)
    lab = np.concatenate([photo.l[..., None], ab_full], -1)
    expected = np.round(color.lab_to_rgb(lab) * 255).astype(int)
    assert np.abs(out.astype(int) - expected).max() <= 1
    # ... so the output is as sharp as the input: where no channel clipped, its L is the
    # input's. (Clipping out-of-gamut ab moves L, by an amount that depends on the weights.)
    keep = _unclipped(out)
    assert keep.mean() > 0.05, "too few unclipped pixels to compare L"
    assert np.abs(lab_l(out) - lab_l(rgb))[keep].mean() < 0.3

    pil = colorizer.colorize(Image.fromarray(rgb).convert("L"))
    assert isinstance(pil, Image.Image)
    assert pil.size == (517, 333)
    assert pil.mode == "RGB"
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    keep = _unclipped(np.asarray(pil))
    assert keep.mean() > 0.05
    diff = np.abs(lab_l(np.asarray(pil)) - lab_l(np.repeat(gray[..., None], 3, -1)))
    assert diff[keep].mean() < 0.3


def test_color_input_is_made_gray_first(colorizer):
    rgb = astronaut(65, 47)
    gray3 = np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, -1)
    photo, photo_gray = to_photo(rgb), to_photo(gray3)
    assert photo.truth is not None
    assert photo_gray.truth is None  # equal channels = gray
    # What the model sees from a colour photo is its CIELAB L alone: the colour is kept
    # only as the "truth" panel of --compare.
    np.testing.assert_allclose(photo.l, color.rgb_to_lab(rgb / 255.0)[..., 0], atol=1e-4)
    np.testing.assert_array_equal(colorizer.predict_photos([photo])[0][0],
                                  colorizer.predict_photos([Photo(l=photo.l)])[0][0])


@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "I", "F", "1", "P", "RGBA", "CMYK", "YCbCr"])
def test_pil_modes(colorizer, mode):
    base = Image.fromarray(astronaut(31, 17))
    im = base.convert(mode) if mode not in ("I;16", "I") else Image.fromarray(
        np.asarray(base.convert("L"), np.uint16) * 257)
    if mode == "I":
        im = im.convert("I")
    out = colorizer.colorize(im)
    assert out.size == (31, 17)
    assert out.mode == "RGB"
    if mode in ("L", "LA", "I;16", "I", "F"):  # gray at any bit depth: the same lightness
        np.testing.assert_allclose(to_photo(im).l, to_photo(base.convert("L")).l, atol=0.5)


def test_arrays_lists_and_batches(colorizer):
    rgb = astronaut(40, 30)
    assert colorizer.colorize(rgb[..., 0]).shape == (30, 40, 3)               # (H, W) gray
    assert colorizer.colorize(rgb[..., :1]).shape == (30, 40, 3)              # (H, W, 1)
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], -1)
    np.testing.assert_array_equal(colorizer.colorize(rgba), colorizer.colorize(rgb))
    f = colorizer.colorize(rgb.astype(np.float32) / 255.0)
    assert f.dtype == np.float32
    assert 0 <= f.min()
    assert f.max() <= 1
    u16 = colorizer.colorize(rgb.astype(np.uint16) * 257)
    assert u16.dtype == np.uint8
    # Batched: a list of different sizes, and an (N, H, W, C) array; same as one by one.
    outs = colorizer.colorize([rgb, astronaut(17, 23), Image.fromarray(rgb)])
    assert [np.asarray(o).shape for o in outs] == [(30, 40, 3), (23, 17, 3), (30, 40, 3)]
    np.testing.assert_array_equal(outs[0], colorizer.colorize(rgb))
    stack = colorizer.colorize(np.stack([rgb] * 5))  # more than batch_size=4: two chunks
    assert stack.shape == (5, 30, 40, 3)
    np.testing.assert_array_equal(stack[4], outs[0])
    with pytest.raises(ValueError, match=r"float images must have values in \[0, 1\]"):
        colorizer.colorize(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="must be \\(H, W\\) or"):
        colorizer.colorize(np.zeros((4, 4, 5)))


def test_exif_orientation_is_respected(tmp_path):
    rgb = astronaut(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif)
    photo = open_photo(tmp_path / "r.jpg")
    assert photo.size == (30, 40)


class NoisyObjective(Objective):
    """A stand-in sampling model: the tiny unet's ab plus rng-dependent noise."""

    def __init__(self, base):
        self.base, self.downsample_factor = base, base.downsample_factor

    def predict_with(self, variables, gray_l, rng, sampling=False):
        ab = self.base.predict_with(variables, gray_l, rng)
        return ab + 0.2 * jax.random.normal(rng, ab.shape)


def test_sampling_models_give_several_different_colorizations(colorizer, exported, tmp_path):
    meta = dict(colorizer.metadata, samples=True, family="diffusion")
    sampler = Colorizer(NoisyObjective(colorizer.objective), colorizer.variables,
                        colorizer.config, meta, batch_size=2)
    rgb = astronaut(45, 21)
    three = sampler.colorize(rgb, num_samples=3)
    assert three.shape == (3, 21, 45, 3)
    assert not np.array_equal(three[0], three[1])
    np.testing.assert_array_equal(sampler.colorize(rgb, num_samples=3), three)  # seeded
    assert len(sampler.colorize(Image.fromarray(rgb), num_samples=2)) == 2


def test_deterministic_models_refuse_samples_and_sizes_are_checked(colorizer, exported):
    with pytest.raises(ValueError, match="'unet' is deterministic"):
        colorizer.colorize(astronaut(8, 8), num_samples=2)
    with pytest.raises(ValueError, match="size=33 is not allowed .* multiples of 2"):
        Colorizer.load(str(exported[0]), size=33)
    assert colorizer.colorize(astronaut(50, 20), size=64).shape == (20, 50, 3)


def _write_inputs(folder: pathlib.Path):
    """A folder as users have them: odd sizes, modes, EXIF, a broken file, a non-image."""
    (folder / "sub").mkdir(parents=True)
    rgb = astronaut()
    Image.fromarray(rgb).save(folder / "astronaut.jpg", quality=92)
    Image.fromarray(rgb).save(folder / "astronaut.png")                  # same stem as the jpg
    Image.fromarray(rgb[:101, :203]).convert("L").save(folder / "sub" / "gray.png")
    Image.fromarray(np.asarray(Image.fromarray(rgb[:50, :70]).convert("L"), np.uint16) * 257
                    ).save(folder / "gray16.png")
    Image.fromarray(np.concatenate([rgb[:40, :60], np.full((40, 60, 1), 128, np.uint8)], -1)
                    ).save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb[:30, :40]).save(folder / "rotated.jpg", exif=exif)
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[:2000])
    (folder / "notes.txt").write_text("not an image")


def _tree(folder: pathlib.Path) -> dict[str, str]:
    """{relative path: sha1 (or "-> target" for a symlink)} of every file under `folder`,
    hidden ones included: what a run must leave unchanged, or exactly what it wrote."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def test_cli_folder(exported, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _write_inputs(src)
    before = _tree(src)
    code = main([f"--model={exported[0]}", f"--input={src}", f"--output={out}", "--compare",
                 "--batch_size=2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sizes = {p.relative_to(out).as_posix(): Image.open(p).size for p in out.rglob("*.png")}
    assert sizes == {
        "astronaut_jpg.png": (517, 333), "astronaut_jpg_compare.png": (3 * 517, 333),
        "astronaut_png.png": (517, 333), "astronaut_png_compare.png": (3 * 517, 333),
        "sub/gray.png": (203, 101), "sub/gray_compare.png": (2 * 203, 101),  # no truth
        "gray16.png": (70, 50), "gray16_compare.png": (2 * 70, 50),
        "alpha.png": (60, 40), "alpha_compare.png": (3 * 60, 40),
        "rotated.png": (30, 40), "rotated_compare.png": (3 * 30, 40),  # EXIF applied
    }
    assert "skipped" in captured.err
    assert "broken.jpg" in captured.err
    assert "truncated.png" in captured.err
    assert "colorized 6 photo(s)" in captured.out
    assert "(12 file(s) written)" in captured.out
    assert "skipped 2" in captured.out
    assert _tree(src) == before
    assert "ignored 1 non-image" in captured.out
    # The compare strip: gray | colour | truth; its middle is the written colorization.
    strip = np.asarray(Image.open(out / "astronaut_png_compare.png"))
    np.testing.assert_array_equal(strip[:, 517:1034], np.asarray(Image.open(out / "astronaut_png.png")))
    np.testing.assert_array_equal(strip[:, 1034:], astronaut())


def test_cli_single_file_and_errors(exported, tmp_path, capsys):
    Image.fromarray(astronaut(21, 13)).save(tmp_path / "one.jpg")
    assert main([f"--model={exported[0]}", f"--input={tmp_path / 'one.jpg'}",
                 f"--output={tmp_path / 'o'}", "--size=64", "--format=jpg"]) == 0
    assert Image.open(tmp_path / "o" / "one.jpg").size == (21, 13)
    # Into the input's own folder: allowed, as the output is another file; the input stays.
    before = hashlib.sha1((tmp_path / "one.jpg").read_bytes()).digest()
    assert main([f"--model={exported[0]}", f"--input={tmp_path / 'one.jpg'}",
                 f"--output={tmp_path}"]) == 0
    assert Image.open(tmp_path / "one.png").size == (21, 13)
    assert hashlib.sha1((tmp_path / "one.jpg").read_bytes()).digest() == before
    (tmp_path / "one.png").unlink()
    capsys.readouterr()

    one = f"--input={tmp_path / 'one.jpg'}"
    assert main([f"--model={exported[0]}", one, f"--output={tmp_path / 'x'}",
                 "--num_samples=3"]) == 2
    assert "deterministic" in capsys.readouterr().err
    assert main([f"--model={exported[0]}", one, f"--output={tmp_path / 'x'}", "--size=31"]) == 2
    assert "multiples of 2" in capsys.readouterr().err
    assert main([f"--model={tmp_path}", one, f"--output={tmp_path / 'x'}"]) == 2
    assert "is not a colorjax export" in capsys.readouterr().err
    assert main([f"--model={exported[0]}", f"--input={tmp_path / 'nope'}",
                 f"--output={tmp_path / 'x'}"]) == 2
    assert "no such file" in capsys.readouterr().err


# --- the CLI and the user's files -------------------------------------------------------


def test_help_states_the_output_rules(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for rule in ("--overwrite", "in/sub/x.jpg -> out/sub/x.png", "a_jpg.png, a_png.png",
                 "b_jpg_2.png", "c_compare_2.png", "inside the input", "symlinks"):
        assert rule in text, rule


def test_output_stems_keep_the_extension_only_where_needed_then_count():
    rels = ["a.jpg", "a.png", "a_jpg.png", "b.JPG", "b.jpg", "c.png", "c_compare.png",
            "d.jpg", "sub/a.jpg", "Sub/x.jpg", "sub/x.png"]
    assert output_stems(rels, ["", "_compare"]) == [
        "a_jpg", "a_png", "a_jpg_2",   # a.jpg and a.png share a folder and a name
        "b_jpg", "b_jpg_2",            # ... also when they differ only in case
        "c", "c_compare_2",            # c_compare.png would collide with c.png's strip
        "d", "sub/a",                  # alone: no extension in the name
        "Sub/x_jpg", "sub/x_png"]      # folders differing in case are one on macOS
    # Without compare strips c_compare.png keeps its name; samples are names of their own.
    assert output_stems(["c.png", "c_compare.png"], [""]) == ["c", "c_compare"]
    assert output_stems(["c.png", "c_sample1.png"], ["_sample1", "_sample2"]) == [
        "c", "c_sample1"]


def test_cli_every_input_gets_its_own_outputs(exported, tmp_path, capsys):
    """The collisions of issue 17: nine photos in, eighteen files out, each traceable."""
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    # Each input has its own size, so each output can be traced back to its input.
    expected = {"a.jpg": "a_jpg", "a.png": "a_png", "a_jpg.png": "a_jpg_2",
                "b.JPG": "b_jpg", "b.jpg": "b_jpg_2", "c.png": "c", "c_compare.png":
                "c_compare_2", "d.jpg": "d", "sub/a.jpg": "sub/a"}
    sizes = {name: (20 + 3 * i, 12 + i) for i, name in enumerate(expected)}
    for name, (w, h) in sizes.items():
        fmt = "JPEG" if name.lower().endswith(".jpg") else "PNG"
        Image.fromarray(astronaut(w, h)).save(src / name, fmt)
    before = _tree(src)
    code = main([f"--model={exported[0]}", f"--input={src}", f"--output={out}", "--compare",
                 "--batch_size=4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert set(_tree(out)) == {f"{s}{k}.png" for s in expected.values()
                               for k in ("", "_compare")}
    for name, stem in expected.items():
        w, h = sizes[name]
        assert Image.open(out / f"{stem}.png").size == (w, h), name
        strip = np.asarray(Image.open(out / f"{stem}_compare.png"))
        np.testing.assert_array_equal(strip[:, 2 * w:], np.asarray(Image.open(src / name)))
    assert "colorized 9 photo(s)" in captured.out
    assert "(18 file(s) written)" in captured.out
    assert _tree(src) == before


def _refused(capsys, argv, what: str) -> str:
    """Run the CLI, expect exit status 2 and one line on stderr that mentions `what`."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: "), err
    assert what in err, err
    assert "Traceback" not in err, err
    return err


def _photo_tree(root: pathlib.Path) -> None:
    (root / "sub").mkdir(parents=True)
    Image.fromarray(astronaut(30, 20)).save(root / "p1.png")
    Image.fromarray(astronaut(25, 15)).save(root / "p2.jpg")
    Image.fromarray(astronaut(17, 13)).save(root / "sub" / "p3.png")


@pytest.mark.parametrize("case", ["same folder", "inside", "symlink to it", "input file",
                                  "symlinked output file", "hard-linked output file",
                                  "mirrored into the input"])
def test_cli_never_writes_over_or_into_its_inputs(exported, tmp_path, capsys, case):
    src = tmp_path / "photos"
    _photo_tree(src)
    inp, out = src, src
    if case == "inside":
        out = src / "colorized"
    elif case == "symlink to it":
        out = tmp_path / "link"
        out.symlink_to(src, target_is_directory=True)
    elif case == "input file":  # --input=FILE --output=its folder
        inp = src / "p1.png"
    elif case in ("symlinked output file", "hard-linked output file"):
        out = tmp_path / "out"
        out.mkdir()
        if case.startswith("sym"):
            (out / "p1.png").symlink_to(src / "p1.png")
        else:
            os.link(src / "p1.png", out / "p1.png")
    elif case == "mirrored into the input":  # photos/photos/x.png -> (out=.)/photos/x.png
        out = tmp_path
        (src / "photos").mkdir()
        Image.fromarray(astronaut(9, 7)).save(src / "photos" / "x.png")
    reason = ("would lie inside --input" if case.startswith("mirrored") else
              "would replace the input" if "file" in case else "is the input folder or inside it")
    before = _tree(tmp_path)
    # --overwrite does not make any of these allowed.
    _refused(capsys, [f"--model={exported[0]}", f"--input={inp}", f"--output={out}",
                      "--compare", "--overwrite"], reason)
    assert _tree(tmp_path) == before


def test_cli_refusals_come_before_the_model_loads_and_without_traceback(tmp_path):
    """The real command line, with a --model that is not an export at all: the refusal is
    what the user hears, in one line, before any work."""
    src = tmp_path / "photos"
    _photo_tree(src)
    before = _tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "colorjax.colorize", f"--model={tmp_path / 'no_export'}",
         f"--input={src}", f"--output={src}"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "never writes into its inputs" in proc.stderr
    assert proc.stdout == ""
    assert _tree(tmp_path) == before


def test_cli_rerun_refuses_existing_outputs_unless_overwrite(exported, tmp_path, capsys):
    """Output folder around the input folder: a rerun reads none of its own outputs back in,
    refuses up front to replace them, and with --overwrite writes the same files again."""
    top = tmp_path / "top"
    src = top / "photos"
    _photo_tree(src)
    inputs = _tree(src)
    argv = [f"--model={exported[0]}", f"--input={src}", f"--output={top}", "--compare"]
    assert main(argv) == 0
    assert "colorized 3 photo(s)" in capsys.readouterr().out
    first = {k: v for k, v in _tree(top).items() if not k.startswith("photos/")}
    assert set(first) == {"p1.png", "p1_compare.png", "p2.png", "p2_compare.png",
                          "sub/p3.png", "sub/p3_compare.png"}

    # Without --overwrite: refused before the model loads (a bogus --model proves it).
    _refused(capsys, [f"--model={tmp_path / 'no_export'}", *argv[1:]],
             f"6 output files already exist (the first: {top / 'p1.png'}); pass --overwrite")
    (top / "p2.png").unlink()
    _refused(capsys, argv, "5 output files already exist")
    assert _tree(src) == inputs

    # --overwrite: the same three photos, the same files; a symlink among the outputs is
    # replaced, not written through.
    elsewhere = tmp_path / "elsewhere.png"
    Image.fromarray(astronaut(5, 5)).save(elsewhere)
    kept = elsewhere.read_bytes()
    (top / "p2.png").symlink_to(elsewhere)
    assert main([*argv, "--overwrite"]) == 0
    assert "colorized 3 photo(s) into" in capsys.readouterr().out
    assert {k: v for k, v in _tree(top).items() if not k.startswith("photos/")} == first
    assert not (top / "p2.png").is_symlink()
    assert elsewhere.read_bytes() == kept
    assert _tree(src) == inputs


def test_cli_unwritable_output_is_reported_before_the_model_loads(tmp_path, capsys,
                                                                   monkeypatch):
    src = tmp_path / "photos"
    _photo_tree(src)
    (tmp_path / "notes.txt").write_text("a file")
    no_model = f"--model={tmp_path / 'no_export'}"
    _refused(capsys, [no_model, f"--input={src}", f"--output={tmp_path / 'notes.txt'}"],
             "is a file, not a folder")
    _refused(capsys, [no_model, f"--input={src}", f"--output={tmp_path / 'notes.txt' / 'o'}"],
             "is under the file")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder read-only as a mount would
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: (
            os.path.realpath(p) != str(locked.resolve()) and access(p, mode)))
    _refused(capsys, [no_model, f"--input={src}", f"--output={locked / 'o'}"],
             f"cannot write in {locked} (permission denied)")
    assert not (tmp_path / "notes.txt" / "o").exists()


def test_cli_a_file_that_cannot_be_written_is_reported_and_not_counted(exported, tmp_path,
                                                                        capsys):
    src, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(src)
    (out / "p1.png").mkdir(parents=True)  # in the way of p1's colorization
    code = main([f"--model={exported[0]}", f"--input={src}", f"--output={out}", "--overwrite"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"could not write {out / 'p1.png'}" in captured.err
    assert "colorized 2 photo(s) into" in captured.out
    assert ("(2 file(s) written); could not "
            "write 1 file(s)" in captured.out)
    assert set(_tree(out)) == {"p2.png", "sub/p3.png"}  # no temporary file left behind


# --- odd files, interrupted runs (issue 37; the CLI end to end: test_hostile_cli_integrity) --


def _dead_pid() -> int:
    """A process id no process can have (above the kernel's pid_max)."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read()) + 1
    except OSError:
        return 2 ** 22 + 1


def test_open_photo_refuses_a_fifo_without_blocking(tmp_path):
    import threading

    from colorjax.media.photos import NotARegularFile

    fifo = tmp_path / "b.jpg"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            result["photo"] = open_photo(str(fifo))
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    blocked = reader.is_alive()
    if blocked:  # release the reader (a writer opens and closes the FIFO) before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert not blocked, "open_photo blocked on a FIFO"
    assert isinstance(result.get("error"), NotARegularFile)
    assert str(result["error"]) == "a FIFO (named pipe), not a regular file"
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(NotARegularFile, match=r"a symbolic link to '.*gone.jpg', which does "
                                              "not exist"):
        open_photo(str(tmp_path / "broken.jpg"))


@pytest.mark.parametrize("kind", ["fifo", "dangling symlink"])
def test_cli_an_input_that_is_no_regular_file_is_one_line(tmp_path, capsys, kind):
    path = tmp_path / "b.jpg"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a FIFO (named pipe), not a regular file"
    else:
        path.symlink_to(tmp_path / "gone.jpg")
        what = f"a symbolic link to '{tmp_path / 'gone.jpg'}', which does not exist"
    _refused(capsys, [f"--model={tmp_path / 'no_export'}", f"--input={path}",
                      f"--output={tmp_path / 'out'}"], f"--input={path} is {what}; allowed: ")


def test_remove_stale_partials_spares_running_writers_and_other_files(tmp_path):
    from colorjax.inference.output_files import remove_stale_partials

    dead, alive = _dead_pid(), os.getppid()
    names = {f".p1.png.{dead}.tmp": False, f".film.mp4.{dead}.tmp.mp4": False,  # removed
             f".p2.png.{alive}.tmp": True,  # a concurrent run's file: kept
             ".notes.tmp": True, f".p3.png.x{dead}.tmp": True, "p4.png": True}
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / f".p5.png.{dead}.tmp").symlink_to(tmp_path / "p4.png")  # not ours: kept
    removed = remove_stale_partials([str(tmp_path), str(tmp_path / "absent")])
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        n for n, kept in names.items() if not kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [n for n, kept in names.items() if kept] + [f".p5.png.{dead}.tmp"])


def test_cli_skip_existing_writes_only_what_is_missing(exported, tmp_path, capsys):
    src, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(src)
    argv = [f"--model={exported[0]}", f"--input={src}", f"--output={out}", "--compare"]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.png")}
    (out / "p2_compare.png").unlink()
    (out / "sub" / "p3.png").unlink()
    (out / f".p1.png.{_dead_pid()}.tmp").write_bytes(b"half a png")  # a killed run's

    _refused(capsys, [*argv, "--overwrite", "--skip_existing"],
             "--overwrite and --skip_existing exclude each other")
    _refused(capsys, argv, "pass --overwrite to replace, --skip_existing to keep them")
    assert main([*argv, "--skip_existing"]) == 0
    captured = capsys.readouterr()
    assert "removed 1 partial file(s) left by an interrupted run" in captured.out
    assert ("colorized 2 photo(s) into " f"{out} (2 file(s) written); kept the existing "
            "outputs of 1 input(s)") in captured.out
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.png")}
    assert set(after) == set(before)
    changed = {p.relative_to(out).as_posix() for p in after if after[p] != before.get(p)}
    assert changed == {"p2_compare.png", "sub/p3.png"}
    assert not [p for p in out.rglob(".*")]
    # Everything there: nothing to do, and that is success.
    assert main([*argv, "--skip_existing"]) == 0
    assert "kept the existing outputs of 3 input(s)" in capsys.readouterr().out


def test_help_names_skip_existing_and_interrupted_runs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--skip_existing" in out
    assert "Ctrl-C stops the run with its summary" in out
    assert "exit status 130" in out


def test_lab_to_rgb_pieces_are_bounded_in_pixels_whatever_the_aspect_ratio(monkeypatch):
    import tracemalloc

    from colorjax import color
    from colorjax.media import photos
    from colorjax.media.photos import STRIPE_PIXELS, lab_to_rgb_striped

    monkeypatch.setattr(photos, "_WORKERS", 2)  # two pieces in flight at a time

    rng = np.random.default_rng(0)
    for shape in ((5, 7), (1, STRIPE_PIXELS + 5), (STRIPE_PIXELS + 3, 1)):
        l = rng.uniform(0, 100, shape).astype(np.float32)
        ab = rng.uniform(-60, 60, shape + (2,)).astype(np.float32)
        want = color.lab_to_rgb(np.concatenate([l[..., None], ab], -1))
        np.testing.assert_allclose(lab_to_rgb_striped(l, ab), want, atol=1e-5)
    # One row of 8 M pixels: the output (96 MB) plus two pieces of STRIPE_PIXELS at a time
    # (about 100 bytes a pixel each, measured), not 8 M-pixel temporaries (~800 MB).
    n = 8 * STRIPE_PIXELS
    l, ab = np.full((1, n), 50, np.float32), np.zeros((1, n, 2), np.float32)
    tracemalloc.start()
    lab_to_rgb_striped(l, ab)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 * n + 2 * 120 * STRIPE_PIXELS, peak


def test_cli_avif_photos_are_colorized_and_heic_ones_reported(exported, tmp_path):
    """AVIF (Pillow reads it where built with libavif) is a photo like any other; HEIC,
    which this Pillow cannot read, is reported in one line (it was ignored as a non-image
    file, or a bare "cannot identify image file")."""
    from PIL import features

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    avif = features.check_module("avif")
    if avif:
        Image.fromarray(astronaut(40, 30)).save(src / "photo.avif", "AVIF")
    Image.fromarray(astronaut(24, 18)).save(src / "plain.png")
    (src / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
                                        + bytes(500))
    r = subprocess.run([sys.executable, "-m", "colorjax.colorize", f"--model={exported[0]}",
                        f"--input={src}", f"--output={out}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    skipped = [ln for ln in r.stderr.splitlines() if ln.startswith("skipped")]
    assert len(skipped) == 1 and "IMG_0001.HEIC" in skipped[0], r.stderr[-2000:]
    assert "a HEIC photo, which cannot be read here" in skipped[0], skipped
    assert "Traceback" not in r.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == (["photo.png", "plain.png"] if avif else ["plain.png"]), written
    if avif:
        assert Image.open(out / "photo.png").size == (40, 30)


def test_cli_batches_no_more_than_its_photos_and_uses_the_compilation_cache(
        exported, tmp_path, monkeypatch, capsys):
    """Fewer photos than --batch_size are not zero-padded to a full batch (time to the
    first photo: a single photo of 512x768 through DDColor-T took 24 s padded to 8); the
    programs go to the persistent compilation cache, --compilation_cache's or the default."""
    from colorjax.platform import runtime

    loads, caches = [], []
    load = Colorizer.load
    monkeypatch.setattr(Colorizer, "load", lambda path, **kw: (loads.append(kw["batch_size"]),
                                                               load(path, **kw))[1])
    monkeypatch.setattr(runtime, "enable_compilation_cache", caches.append)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(astronaut(40 + i, 30)).save(src / f"{i}.png")
    one = f"--input={src / '0.png'}"
    assert main([f"--model={exported[0]}", one, f"--output={tmp_path / 'a'}"]) == 0
    assert main([f"--model={exported[0]}", f"--input={src}", f"--output={tmp_path / 'b'}",
                 f"--compilation_cache={tmp_path / 'cache'}"]) == 0
    assert main([f"--model={exported[0]}", f"--input={src}", f"--output={tmp_path / 'c'}",
                 "--batch_size=2", "--compilation_cache=none"]) == 0
    assert loads == [1, 3, 2]
    assert caches == [None, str(tmp_path / "cache"), "none"]
    # One photo alone or in a folder of three: the same colours.
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "0.png")),
                                  np.asarray(Image.open(tmp_path / "b" / "0.png")))
    assert "colorized 3 photo(s)" in capsys.readouterr().out


def test_ctrl_c_just_after_a_rename_still_counts_that_file(exported, tmp_path, capsys,
                                                           monkeypatch):
    """A SIGINT that lands between a file's rename into place and the counters that report
    it (a race a test of the CLI hit under load): the summary counts every file on disk."""
    import signal

    from colorjax.inference import output_files

    src, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(src)
    real = output_files.save_atomic

    def save_then_ctrl_c(rgb8, path, fmt):
        real(rgb8, path, fmt)
        os.kill(os.getpid(), signal.SIGINT)  # delivered before the next bytecode runs

    monkeypatch.setattr(output_files, "save_atomic", save_then_ctrl_c)
    code = main([f"--model={exported[0]}", f"--input={src}", f"--output={out}"])
    captured = capsys.readouterr()
    assert code == 130, captured.err
    on_disk = sorted(_tree(out))
    assert len(on_disk) == 1, on_disk  # the interrupt stopped the run after the first photo
    assert (f"interrupted: colorized 1 photo(s) into {out} (1 file(s) written); not "
            f"colorized: 2 photo(s)") in captured.out, captured.out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_photo_conversions_on_several_threads_give_the_one_thread_result(monkeypatch):
    """L and Lab -> RGB of a photo cut into pieces for `_WORKERS` threads: the same bits as
    in one piece on one thread, every pixel written."""
    from colorjax.media import photos

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (301, 203, 3), dtype=np.uint8)
    ab = rng.uniform(-60, 60, (301, 203, 2)).astype(np.float32)
    monkeypatch.setattr(photos, "_WORKERS", 1)
    l_one = photos._lightness(rgb)
    rgb_one = photos.lab_to_rgb_striped(l_one, ab)
    monkeypatch.setattr(photos, "_WORKERS", 3)
    monkeypatch.setattr(photos, "STRIPE_PIXELS", 5000)  # many pieces, 3 threads
    np.testing.assert_array_equal(photos._lightness(rgb), l_one)
    np.testing.assert_array_equal(photos.lab_to_rgb_striped(l_one, ab), rgb_one)
