"""`python -m colorjax.convert --from=MODEL --weights=FILE.pth --output=DIR`:
a published checkpoint as a colorjax export (see `colorjax.convert`). A mistake (a
missing or unreadable file, a file of another architecture, a name whose sha256 suffix
does not match) is one line on stderr and exit status 2."""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()

import argparse
import sys

from colorjax.convert import ddcolor, deoldify, zhang
from colorjax.convert.files import ConversionError
from colorjax.platform import cli

# --from -> (the converter module, one line on the model, its published file names)
SOURCES = {
    **{m: (zhang, r.title, r.file) for m, r in zhang.RELEASES.items()},
    **{m: (ddcolor, ddcolor.TITLE, ", ".join(r.files)) for m, r in ddcolor.RELEASES.items()},
    **{m: (deoldify, r.title, r.file) for m, r in deoldify.RELEASES.items()},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m colorjax.convert",
        description="Convert a published colorizer's PyTorch weights into a colorjax export "
                    "(Colorizer.load, colorize, serve, --config.init_from).",
        epilog="Published files (richzhang/colorization's README, piddnad/DDColor's "
               "MODEL_ZOO.md, jantic/DeOldify's README): " + "; ".join(
                   f"--from={m}: {files}" for m, (_, _, files) in SOURCES.items()))
    p.add_argument("--from", dest="source", required=True, choices=sorted(SOURCES),
                   help="which network the weights are for")
    p.add_argument("--weights", required=True, help="the .pth file (a torch.save state_dict, or a fastai checkpoint)")
    p.add_argument("--output", required=True,
                   help="the export directory to write (an existing export there is replaced)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from colorjax.inference.artifact import ExportError
    converter, title, _ = SOURCES[args.source]
    try:
        path = converter.convert(args.source, args.weights, args.output,
                       say=lambda line: print(line, flush=True))
    except (ConversionError, ExportError) as e:
        cli.fail(f"error: --weights={args.weights}: {e}" if isinstance(e, ConversionError)
                 else f"error: --output={args.output}: {e}")
    print(f"wrote {path}: {args.source} ({title})\n"
          f"colorize with: python -m colorjax.colorize --model={path} --input=PHOTOS "
          "--output=OUT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
