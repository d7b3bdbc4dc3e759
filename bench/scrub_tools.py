"""Compare mat2, exiftool and an ffmpeg remux on phone media with planted metadata.

Makes the samples of tests/media_samples.py (GPS, make/model, serial, creation time, author),
runs each tool on a copy, and prints for each format and tool what `exiftool -a -G1 -u` still
finds of the planted facts, whether the result still decodes, and the time taken. This is the
table in docs/scrubbing.md; it asserts nothing.

    .venv/bin/python bench/scrub_tools.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import media_samples as ms

from app.editor import scrub

FFMPEG_REMUX = ["-map", "0", "-c", "copy", "-map_metadata", "-1", "-map_chapters", "-1",
                "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def run_mat2(src: Path, out: Path) -> str:
    work = out.parent / f"mat2-{src.name}"
    shutil.copy(src, work)
    proc = subprocess.run(["mat2", str(work)], capture_output=True, text=True)
    cleaned = work.with_name(f"{work.stem}.cleaned{work.suffix}")
    if not cleaned.exists():
        return (proc.stdout + proc.stderr).strip().splitlines()[-1][:60]
    cleaned.rename(out)
    return ""


def run_exiftool(src: Path, out: Path) -> str:
    proc = subprocess.run(["exiftool", "-q", "-m", "-all=", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    return "" if out.exists() else (proc.stderr.strip().splitlines() or ["failed"])[-1][:60]


def run_ffmpeg(src: Path, out: Path) -> str:
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), *FFMPEG_REMUX, str(out)],
                          capture_output=True, text=True)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def run_guwah(src: Path, out: Path) -> str:
    try:
        result = scrub.scrub(src)
    except scrub.EditorError as exc:
        return str(exc)[:60]
    result.dest.rename(out)
    return ""


TOOLS = {"mat2": run_mat2, "exiftool -all=": run_exiftool, "ffmpeg remux": run_ffmpeg,
         "guwah-editor scrub": run_guwah}


def decodes(path: Path) -> bool:
    if path.suffix == ".heic":
        proc = subprocess.run([sys.executable, "-c", "import pillow_heif,sys; "
                               "pillow_heif.open_heif(sys.argv[1]).to_pillow().load()", str(path)],
                              capture_output=True)
        return proc.returncode == 0
    proc = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null",
                           "-"], capture_output=True)
    return proc.returncode == 0


def categories(lines: list[str]) -> str:
    names = {"GPS": ("39 deg", "39.90", "116."), "model": (ms.MODEL,), "serial": (ms.SERIAL,),
             "time": ("2024:03:05", "2024-03-05"), "author": (ms.AUTHOR,)}
    left = [k for k, needles in names.items() if any(n in ln for ln in lines for n in needles)]
    return ", ".join(left) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep samples and outputs in this folder")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="scrub-bench-"))
    samples = ms.make_all(root / "samples")
    for cmd in (["exiftool", "-ver"], ["ffmpeg", "-version"], ["mat2", "--version"]):
        version = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        print(f"{cmd[0]}: {version}")
    print("| format | tool | planted facts left | decodes | seconds |")
    print("|---|---|---|---|---|")
    for name, src in sorted(samples.items()):
        planted = categories(ms.leaks(src))
        print(f"| {name} | (original) | {planted} | {'yes' if decodes(src) else 'NO'} | |")
        for tool, fn in TOOLS.items():
            out_dir = root / tool.split()[0]
            out_dir.mkdir(exist_ok=True)
            out = out_dir / name
            work = out_dir / f"in-{name}"
            shutil.copy(src, work)
            started = time.perf_counter()
            error = fn(work, out)
            took = time.perf_counter() - started
            if error:
                print(f"| {name} | {tool} | refused: {error} | | |")
                continue
            left = categories(ms.leaks(out))
            print(f"| {name} | {tool} | {left} | {'yes' if decodes(out) else 'NO'} | "
                  f"{took:.2f} |")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
