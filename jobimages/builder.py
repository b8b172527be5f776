"""Build the built-in templates: video, optional matte, track, poster and metadata each.

Everything comes from code and the installed packages, so a fresh machine can rebuild
the same files byte for byte without downloading anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from jobimages.colour import AVCOL_SPC_BT709
from jobimages.scenes import Image, Scene, all_scenes, scenes_named
from jobimages.template import TemplateInfo
from jobimages.track import measure_placement

_AUDIO_RATE = 48_000
_CRF = 24  # synthetic scenes stay sharp at this CRF and well under 3 MB
_MATTE_CRF = 16  # matte edges decide where the photo shows, so keep them crisp
_PRESET = "medium"
_THREADS = 2  # fixed, since x264's output may differ with the thread count


def build_templates(
    out_dir: Path,
    names: list[str] | None = None,
    on_built: Callable[[TemplateInfo], None] | None = None,
) -> list[TemplateInfo]:
    """Build the named templates (the product's three by default) and write an index.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = all_scenes() if names is None else scenes_named(names)
    built = []
    for scene in scenes:
        info = build_template(scene, out_dir)
        built.append(info)
        if on_built is not None:
            on_built(info)
    index = {
        "format": "clipyard.template-index",
        "version": 1,
        "templates": [t.name for t in built],
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n", "utf-8")
    return built


def build_template(scene: Scene, out_dir: Path) -> TemplateInfo:
    """Render one scene to its files and return its metadata."""
    track = scene.track
    video = out_dir / f"{scene.name}.mp4"
    matte_path = out_dir / f"{scene.name}.matte.mp4"
    poster = out_dir / f"{scene.name}.jpg"
    track_path = out_dir / f"{scene.name}.track.json"
    largest = _largest_frame(scene)
    has_matte = False
    with _Writer(video, scene, _CRF, with_audio=scene.has_audio) as main:
        matte_writer: _Writer | None = None
        try:
            for i in range(track.frame_count):
                image, matte = scene.draw(i, track.quad_at(i))
                main.write(image)
                if i == largest:
                    av.VideoFrame.from_ndarray(image, format="rgb24").to_image().save(  # type: ignore[no-untyped-call]
                        poster, format="JPEG", quality=88
                    )
                if matte is not None:
                    if matte_writer is None:
                        matte_writer = _Writer(matte_path, scene, _MATTE_CRF, with_audio=False)
                        has_matte = True
                        matte_writer.skip_to(i)
                    matte_writer.write(np.repeat(matte[:, :, None], 3, axis=2))
        finally:
            if matte_writer is not None:
                matte_writer.close()
    track_path.write_text(json.dumps(track.to_json(), indent=1) + "\n", "utf-8")
    info = TemplateInfo(
        name=scene.name,
        title=scene.title,
        width=track.width,
        height=track.height,
        fps=track.fps,
        frame_count=track.frame_count,
        duration_s=float(track.frame_count / track.fps),
        aspect=track.aspect,
        has_audio=scene.has_audio,
        video=video,
        track=track_path,
        poster=poster,
        matte=matte_path if has_matte else None,
    )
    (out_dir / f"{scene.name}.json").write_text(
        json.dumps(info.to_json(), indent=2) + "\n", "utf-8"
    )
    return info


def _largest_frame(scene: Scene) -> int:
    """Return the frame where the placement is biggest: the poster shows that one."""
    return measure_placement(scene.track).largest_frame


class _Writer:
    """Encode RGB frames (and a generated soundtrack) into an H.264/AAC MP4."""

    def __init__(self, path: Path, scene: Scene, crf: int, *, with_audio: bool) -> None:
        track = scene.track
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._container.add_stream(
            "libx264", rate=track.fps, options={"crf": str(crf), "preset": _PRESET}
        )
        self._video.width, self._video.height = track.width, track.height
        self._video.pix_fmt = "yuv420p"
        ctx = self._video.codec_context
        ctx.thread_count = _THREADS
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = AVCOL_SPC_BT709
        ctx.color_range = int(ColorRange.MPEG)
        self._index = 0
        self._time_base = 1 / track.fps
        if with_audio:
            self._write_audio(float(track.frame_count / track.fps))

    def _write_audio(self, seconds: float) -> None:
        """Add a soft, slowly swelling chord: enough to prove the audio survives compositing."""
        stream = self._container.add_stream("aac", rate=_AUDIO_RATE, layout="stereo")
        stream.bit_rate = 96_000
        total = int(seconds * _AUDIO_RATE)
        step = 1024
        for start in range(0, total, step):
            t = np.arange(start, min(start + step, total)) / _AUDIO_RATE
            swell = 0.5 - 0.5 * np.cos(2 * math.pi * t / seconds)
            tone = sum(np.sin(2 * math.pi * f * t) for f in (220.0, 277.18, 329.63)) / 3
            left = (0.25 * swell * tone).astype(np.float32)
            right = (0.25 * swell * np.roll(tone, 40)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.stack([left, right]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = _AUDIO_RATE, start
            for packet in stream.encode(frame):
                self._container.mux(packet)
        for packet in stream.encode(None):
            self._container.mux(packet)

    def skip_to(self, index: int) -> None:
        """Write black frames up to index: a matte that starts late is empty before then."""
        black = np.zeros((self._video.height, self._video.width, 3), np.uint8)
        while self._index < index:
            self.write(black)

    def write(self, image: Image) -> None:
        """Encode one RGB frame as BT.709 limited-range yuv420p."""
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format="yuv420p",
            src_colorspace=Colorspace.ITU709,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
        )
        frame.pts, frame.time_base = self._index, self._time_base
        self._index += 1
        for packet in self._video.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        for packet in self._video.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
