"""Screenshot of a report's interactive training map (headless Chromium), e.g. for the README.

    python scripts/screenshot_report_map.py FITDIR --select edge:e2 --out docs/figures/report_map.png

Opens ``FITDIR/report.html#tm=<select>``, reads where the map and its panel are
from the ``data-tm-box`` attribute the page's script sets, and saves that part
of a screenshot as a small palette PNG.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("error: chromium not found (apt-get install chromium)")


def run(args: list[str], profile: Path) -> str:
    base = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--window-size=1200,2400",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120, check=True).stdout


def main(argv=None) -> int:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fit_dir", type=Path)
    parser.add_argument("--select", default="", help="state:K or edge:eN to show selected (default: none)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=900, help="width of the saved image in pixels (default: 900)")
    args = parser.parse_args(argv)
    url = (args.fit_dir / "report.html").resolve().as_uri() + (f"#tm={args.select}" if args.select else "")
    with tempfile.TemporaryDirectory() as tmp:
        dom = run(["--dump-dom", url], Path(tmp) / "profile")
        box = re.search(r'data-tm-box="(-?\d+),(-?\d+),(\d+),(\d+)"', dom)
        if box is None:
            sys.exit("error: the page's map script did not run (no data-tm-box)")
        x, y, w, h = (int(v) for v in box.groups())
        shot = Path(tmp) / "shot.png"
        run([f"--screenshot={shot}", url], Path(tmp) / "profile")
        image = Image.open(shot).convert("RGB").crop((x, y, x + w, y + h))
    scale = min(1.0, args.width / image.width)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"{args.out} ({image.width}x{image.height}, {args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
