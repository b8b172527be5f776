"""The `clipyard-composite` command: composite a photo into a template, or build templates.

Exit codes (the container contract): 0 done, 2 bad input (do not retry), 3 storage
unreachable (retry), 124 its deadline (``CLIPYARD_DEADLINE_AT``) came, anything else
unexpected (retry).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobimages.deadline import EXIT_DEADLINE, BadDeadline, arm_deadline, deadline_from
from jobimages.errors import EXIT_BAD_INPUT, EXIT_DONE, EXIT_UNEXPECTED, CompositorError
from jobimages.events import EventWriter
from jobimages.transfer import RetryPolicy
from jobimages.urls import Redactor


@dataclass(frozen=True)
class Settings:
    """Limits and retry budget, read once from the environment."""

    max_image_pixels: int = 50_000_000  # the API's upload limit; larger is refused as a bomb
    max_image_bytes: int = 64 << 20  # likewise for the compressed file
    max_template_bytes: int = (
        512 << 20
    )  # templates are ours, but a wrong URL should not fill the disk
    upload_block_bytes: int = 4 << 20  # outputs above this go up as a block list
    retry_attempts: int = 5
    retry_base_delay_s: float = 0.5
    request_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read JOBIMAGE_* overrides; anything unset keeps its default."""
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            return default if raw is None or raw == "" else float(raw)

        return cls(
            max_image_pixels=int(number("JOBIMAGE_MAX_IMAGE_PIXELS", defaults.max_image_pixels)),
            max_image_bytes=int(number("JOBIMAGE_MAX_IMAGE_BYTES", defaults.max_image_bytes)),
            max_template_bytes=int(
                number("JOBIMAGE_MAX_TEMPLATE_BYTES", defaults.max_template_bytes)
            ),
            upload_block_bytes=max(
                1024, int(number("JOBIMAGE_UPLOAD_BLOCK_BYTES", defaults.upload_block_bytes))
            ),
            retry_attempts=max(1, int(number("JOBIMAGE_RETRY_ATTEMPTS", defaults.retry_attempts))),
            retry_base_delay_s=number("JOBIMAGE_RETRY_BASE_DELAY_S", defaults.retry_base_delay_s),
            request_timeout_s=number("JOBIMAGE_REQUEST_TIMEOUT_S", defaults.request_timeout_s),
        )

    def retry_policy(self) -> RetryPolicy:
        """Return the retry policy these settings describe."""
        return RetryPolicy(
            attempts=self.retry_attempts,
            base_delay_s=self.retry_base_delay_s,
            timeout_s=self.request_timeout_s,
        )


class _ArgumentError(Exception):
    """argparse found the command line unusable."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so usage errors follow the contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


# The task manager passes URLs as (secure) environment values, so SAS tokens never
# show in a process listing or a container group's definition; flags win over these.
URL_ENVIRONMENT = {
    "template_video": "CLIPYARD_TEMPLATE_VIDEO_URL",
    "track": "CLIPYARD_TRACK_URL",
    "image": "CLIPYARD_IMAGE_URL",
    "matte": "CLIPYARD_MATTE_URL",
    "output": "CLIPYARD_OUTPUT_URL",
    "poster": "CLIPYARD_POSTER_URL",
}
_REQUIRED_URLS = ("template_video", "track", "image", "output")


def _fill_urls_from_environment(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Take each URL not given as a flag from its environment variable."""
    for dest, variable in URL_ENVIRONMENT.items():
        if getattr(args, dest) is None and env.get(variable):
            setattr(args, dest, env[variable])
    for dest in _REQUIRED_URLS:
        if getattr(args, dest) is None:
            flag = "--" + dest.replace("_", "-")
            raise _ArgumentError(f"{flag} (or {URL_ENVIRONMENT[dest]}) is required")


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = _Parser(prog="clipyard-composite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="composite a photo into a template video")
    run.add_argument("--template-video", metavar="URL")
    run.add_argument("--track", metavar="URL", help="placement track JSON")
    run.add_argument("--image", metavar="URL", help="the user's photo")
    run.add_argument(
        "--matte", metavar="URL", help="matte video: white where something is in front"
    )
    run.add_argument("--crop", metavar="X,Y,W,H", help="part of the photo to use, in pixels")
    run.add_argument("--output", metavar="URL", help="path or write-only SAS URL")
    run.add_argument("--poster", metavar="URL", help="where to write a JPEG poster frame")
    run.add_argument("--crf", type=int, default=20, help="x264 quality, 0-51 (default 20)")
    run.add_argument("--preset", default="medium", help="x264 preset (default medium)")
    run.add_argument("--threads", type=int, default=0, help="encoder threads, 0 = auto")
    build = commands.add_parser("build-templates", help="generate the built-in templates")
    build.add_argument("out_dir", type=Path)
    build.add_argument("--only", action="append", metavar="NAME", help="build just this template")
    return parser


_PRESETS = frozenset(
    {
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
        "placebo",
    }
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    args_list = sys.argv[1:] if argv is None else argv
    secrets = [a for a in args_list if "?" in a]
    secrets += [os.environ[v] for v in URL_ENVIRONMENT.values() if "?" in os.environ.get(v, "")]
    redactor = Redactor(secrets)
    events = EventWriter(sys.stdout, redactor)
    try:
        args = build_parser().parse_args(args_list)
        deadline_at = deadline_from(os.environ)
        if deadline_at is not None:
            arm_deadline(
                deadline_at,
                lambda: _fail(events, redactor, EXIT_DEADLINE, "the deadline came: stopping"),
            )
        if args.command == "build-templates":
            return _build_templates(args, events)
        _fill_urls_from_environment(args, os.environ)
        return _run(args, Settings.from_env(os.environ), events)
    except (_ArgumentError, BadDeadline) as exc:
        return _fail(events, redactor, EXIT_BAD_INPUT, f"bad arguments: {exc}")
    except CompositorError as exc:
        return _fail(events, redactor, exc.exit_code, str(exc))
    except Exception as exc:
        sys.stderr.write(redactor.scrub(traceback.format_exc()))
        return _fail(events, redactor, EXIT_UNEXPECTED, f"unexpected {type(exc).__name__}: {exc}")


def _fail(events: EventWriter, redactor: Redactor, code: int, message: str) -> int:
    """Report a failure on stdout (the event) and stderr (one line), and return its code."""
    events.error(code, message)
    sys.stderr.write(redactor.scrub(f"clipyard-composite: {' '.join(message.split())}") + "\n")
    sys.stderr.flush()
    return code


def _build_templates(args: argparse.Namespace, events: EventWriter) -> int:
    """Build the built-in templates into a folder."""
    from jobimages.builder import build_templates

    started = time.monotonic()
    built = build_templates(
        args.out_dir,
        names=args.only,
        on_built=lambda info: events.emit("template", name=info.name, frames=info.frame_count),
    )
    events.done(templates=[t.name for t in built], seconds=round(time.monotonic() - started, 2))
    return EXIT_DONE


def _run(args: argparse.Namespace, settings: Settings, events: EventWriter) -> int:
    """Fetch the inputs, composite, upload the outputs, and report."""
    # Imported here so `--help` and argument errors stay instant in a cold container.
    from jobimages.compositor import CompositeJob, EncodeSettings, composite
    from jobimages.errors import BadInput
    from jobimages.photo import Crop, load_photo
    from jobimages.track import measure_placement, parse_track
    from jobimages.transfer import fetch_to_file, store_file

    if args.preset not in _PRESETS:
        raise BadInput(
            f"--preset must be one of {', '.join(sorted(_PRESETS))}; got {args.preset!r}"
        )
    if not 0 <= args.crf <= 51:
        raise BadInput(f"--crf must be between 0 and 51; got {args.crf}")
    crop = Crop.parse(args.crop) if args.crop else None
    policy = settings.retry_policy()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clipyard-") as scratch:
        work = Path(scratch)
        fetch_to_file(
            args.track, work / "track.json", what="track", policy=policy, max_bytes=16 << 20
        )
        track = parse_track((work / "track.json").read_bytes())
        fetch_to_file(
            args.template_video,
            work / "template.mp4",
            what="template video",
            policy=policy,
            max_bytes=settings.max_template_bytes,
        )
        matte = None
        if args.matte:
            matte = work / "matte.mp4"
            fetch_to_file(
                args.matte,
                matte,
                what="matte video",
                policy=policy,
                max_bytes=settings.max_template_bytes,
            )
        fetch_to_file(
            args.image,
            work / "photo",
            what="photo",
            policy=policy,
            max_bytes=settings.max_image_bytes,
        )
        extent = measure_placement(track)
        photo = load_photo(
            work / "photo",
            aspect=track.aspect,
            needed_size=(extent.width, extent.height),
            crop=crop,
            max_pixels=settings.max_image_pixels,
        )
        job = CompositeJob(
            video=work / "template.mp4",
            track=track,
            photo=photo,
            output=work / "output.mp4",
            matte=matte,
            poster=work / "poster.jpg" if args.poster else None,
        )
        events.start(track.frame_count)
        frames = composite(
            job,
            EncodeSettings(crf=args.crf, preset=args.preset, threads=args.threads),
            events.progress,
        )
        store_file(
            job.output,
            args.output,
            what="output",
            content_type="video/mp4",
            policy=policy,
            block_bytes=settings.upload_block_bytes,
        )
        if job.poster is not None:
            store_file(
                job.poster, args.poster, what="poster", content_type="image/jpeg", policy=policy
            )
        output_bytes = job.output.stat().st_size
    elapsed = time.monotonic() - started
    events.done(
        frames=frames,
        output_bytes=output_bytes,
        duration_s=round(float(track.frame_count / track.fps), 3),
        seconds=round(elapsed, 3),
        fps=round(frames / elapsed, 2) if elapsed > 0 else None,
    )
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
