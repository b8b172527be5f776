"""Benchmark the compositor against a plain re-encode of the same template.

Run with `python -m tests.benchmarks.compositor`. Each side runs in its own subprocess so
its peak RSS is its own; each side runs --runs times, alternating, and the fastest run of
each is reported (the machine is shared, and noise only ever adds time).

The headline ratio composites a photo-like 12-megapixel JPEG. Such a photo is much busier
than the template's flat placeholder, so x264 spends more CPU on the output than on the
plain re-encode whatever the compositor does; the flat-photo control isolates the
compositor's own cost by compositing a photo of the placeholder's colour.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = "screen"  # the built-in 1080p, 30 fps, 10 s template


def reencode(source: Path, target: Path, crf: int, preset: str, threads: int) -> None:
    """Decode the template and encode it again, copying audio: the floor for compositing."""
    import av
    from av.video.frame import PictureType

    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        in_video = src.streams.video[0]
        in_video.thread_type = "AUTO"
        encoder = out.add_stream(
            "libx264", rate=in_video.average_rate, options={"crf": str(crf), "preset": preset}
        )
        encoder.width, encoder.height, encoder.pix_fmt = in_video.width, in_video.height, "yuv420p"
        encoder.codec_context.thread_count = threads
        audio = {s.index: out.add_stream_from_template(s) for s in src.streams.audio}
        index = 0
        for packet in src.demux():
            if packet.stream.index in audio:
                if packet.dts is not None:
                    packet.stream = audio[packet.stream.index]
                    out.mux(packet)
                continue
            for frame in packet.decode():
                frame.pts, frame.time_base = index, encoder.codec_context.time_base
                frame.pict_type = PictureType.NONE
                index += 1
                out.mux(encoder.encode(frame))
        out.mux(encoder.encode(None))


@dataclass(frozen=True)
class Run:
    """One measured subprocess."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def _measure(command: list[str]) -> Run:
    """Run a command in its own process; return its wall time, CPU time and peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"benchmark step failed with exit {process.returncode}: {command}")
    # Linux reports ru_maxrss in kilobytes.
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _make_photo(path: Path) -> None:
    """Write a 12-megapixel, phone-sized JPEG that looks like a photo to the encoder.

    Smooth sky and ground, a few dozen hard-edged shapes, and sensor-like grain: detail a
    real photo has, without the pure noise no camera produces.
    """
    import cv2
    import numpy as np
    from PIL import Image

    height, width = 3024, 4032
    rng = np.random.default_rng(2024)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = (1 - t) * np.array([70, 130, 210], np.float32) + t * np.array([200, 220, 240], np.float32)
    image = np.broadcast_to(sky, (height, width, 3)).astype(np.uint8).copy()
    horizon = height * 3 // 5
    image[horizon:] = (60, 110, 50)
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(height // 3, height)))
        axes = (int(rng.integers(60, 500)), int(rng.integers(40, 300)))
        colour = tuple(int(c) for c in rng.integers(20, 235, 3))
        cv2.ellipse(
            image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA
        )
    grain = rng.normal(0.0, 6.0, (height, width, 1)).astype(np.float32)
    image = np.clip(image.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=90)


def _emit(name: str, value: float, unit: str, goal: str = "") -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({"metric": name, "value": round(value, 3), "unit": unit, "goal": goal}))


def _make_flat_photo(path: Path, templates: Path) -> None:
    """Write a photo in the exact colour of the template's placeholder.

    Composited, it gives the encoder the same picture as the plain re-encode, so the ratio
    measures the compositor alone rather than the extra bits a busy photo costs x264.
    """
    import av
    import numpy as np
    from PIL import Image

    from jobimages.track import parse_track

    track = parse_track((templates / f"{TEMPLATE}.track.json").read_bytes())
    centre = track.quad_at(0).mean(axis=0).astype(int)
    with av.open(str(templates / f"{TEMPLATE}.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    colour = tuple(
        int(c)
        for c in np.median(
            first[centre[1] - 8 : centre[1] + 8, centre[0] - 8 : centre[0] + 8], axis=(0, 1)
        )
    )
    Image.new("RGB", (4032, 3024), colour).save(path, quality=92)


def _composite_cmd(templates: Path, photo: Path, output: Path, encode: list[str]) -> list[str]:
    """Return the real CLI invocation for one composite."""
    return [
        sys.executable,
        "-m",
        "jobimages.cli",
        "run",
        "--template-video",
        str(templates / f"{TEMPLATE}.mp4"),
        "--track",
        str(templates / f"{TEMPLATE}.track.json"),
        "--image",
        str(photo),
        "--output",
        str(output),
        *encode,
    ]


def main() -> None:
    """Build the template, time each side, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--templates", type=Path, help="reuse templates built earlier")
    parser.add_argument("--reencode", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-flat-photo", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_photo:
        _make_photo(args.make_photo)
        return
    if args.make_flat_photo:
        _make_flat_photo(*args.make_flat_photo)
        return
    if args.reencode:
        reencode(*args.reencode, args.crf, args.preset, args.threads)
        return

    me = [sys.executable, "-m", "tests.benchmarks.compositor"]
    with tempfile.TemporaryDirectory(prefix="clipyard-bench-") as scratch:
        work = Path(scratch)
        templates = args.templates or work / "templates"
        if not (templates / f"{TEMPLATE}.mp4").exists():
            build = ["build-templates", str(templates), "--only", TEMPLATE]
            subprocess.run(
                [sys.executable, "-m", "jobimages.cli", *build],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        photo, flat = work / "photo.jpg", work / "flat.jpg"
        # In children: the photos' arrays would otherwise swell this process, and Linux
        # carries a parent's resident size into each child's ru_maxrss across fork.
        subprocess.run([*me, "--make-photo", str(photo)], check=True)
        subprocess.run([*me, "--make-flat-photo", str(flat), str(templates)], check=True)
        encode = ["--crf", str(args.crf), "--preset", args.preset, "--threads", str(args.threads)]
        sides = {
            "reencode": [
                *me,
                "--reencode",
                str(templates / f"{TEMPLATE}.mp4"),
                str(work / "reencode.mp4"),
                *encode,
            ],
            "composite": _composite_cmd(templates, photo, work / "composite.mp4", encode),
            "flat": _composite_cmd(templates, flat, work / "flat.mp4", encode),
        }
        runs: dict[str, list[Run]] = {name: [] for name in sides}
        for _ in range(args.runs):  # alternate, so a noisy spell hits every side alike
            for name, command in sides.items():
                runs[name].append(_measure(command))
        frames = json.loads((templates / f"{TEMPLATE}.json").read_text())["frame_count"]

    def best(name: str) -> Run:
        """Fastest wall time; CPU and RSS of the worst run (noise only adds time)."""
        return Run(
            min(r.wall_s for r in runs[name]),
            min(r.cpu_s for r in runs[name]),
            max(r.peak_rss_mb for r in runs[name]),
        )

    composite, reencode_run, flat_run = best("composite"), best("reencode"), best("flat")
    _emit("compositor.ratio", composite.wall_s / reencode_run.wall_s, "x", "<= 1.15")
    _emit("compositor.composite_s", composite.wall_s, "s")
    _emit("compositor.reencode_s", reencode_run.wall_s, "s")
    _emit("compositor.fps", frames / composite.wall_s, "frames/s")
    _emit("compositor.peak_rss_mb", composite.peak_rss_mb, "MB")
    _emit("compositor.reencode_peak_rss_mb", reencode_run.peak_rss_mb, "MB")
    _emit("compositor.rss_ratio", composite.peak_rss_mb / reencode_run.peak_rss_mb, "x", "<= 1.25")
    # Controls: the same pipeline with a photo the encoder finds as cheap as the template,
    # and CPU seconds, which a shared machine disturbs far less than wall time.
    _emit("compositor.flat_photo_ratio", flat_run.wall_s / reencode_run.wall_s, "x", "<= 1.15")
    _emit("compositor.composite_cpu_s", composite.cpu_s, "s")
    _emit("compositor.flat_photo_cpu_s", flat_run.cpu_s, "s")
    _emit("compositor.reencode_cpu_s", reencode_run.cpu_s, "s")


if __name__ == "__main__":
    main()
