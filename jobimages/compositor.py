"""Stream a template video through the photo placer into an H.264 MP4, frame by frame.

A worker thread decodes the template (and matte) and composites each frame while the
main thread feeds the encoder; PyAV, libx264 and OpenCV release the GIL, so the encoder
stays busy while the next frame is prepared. The queue between them is short, which
keeps memory to a handful of frames whatever the video's length.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from jobimages.colour import Plane, as_plane, space_for
from jobimages.errors import BadInput
from jobimages.track import Track, measure_placement
from jobimages.warp import PhotoPlacer

_QUEUE_FRAMES = 4  # enough to ride out jitter between the two threads
_AUDIO_LEAD_S = 0.5  # mux audio this far ahead of the video, as players like it interleaved
_END = object()
_WORKER_NICENESS = 10  # on Linux, per thread; higher is lower priority


@dataclass(frozen=True)
class EncodeSettings:
    """How the output is encoded; the defaults suit gallery playback in a browser."""

    crf: int = 20  # visually lossless-ish for 1080p; lower is bigger
    preset: str = "medium"  # x264's own default: the speed/size balance most players expect
    threads: int = 0  # 0 lets x264 pick from the CPU count


@dataclass(frozen=True)
class CompositeJob:
    """Local files for one composite: inputs already fetched, outputs still to upload."""

    video: Path
    track: Track
    photo: Plane  # RGB or RGBA, 8-bit, from photo.load_photo
    output: Path
    matte: Path | None = None
    poster: Path | None = None


def open_video(path: Path, what: str) -> av.container.InputContainer:
    """Open a video file, raising BadInput if it is not one."""
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise BadInput(f"the {what} is not a readable video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise BadInput(f"the {what} has no video stream")
    return container


def check_template(container: av.container.InputContainer, track: Track, what: str) -> None:
    """Raise BadInput unless the video matches the size and length the track was made for."""
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if (width, height) != (track.width, track.height):
        raise BadInput(
            f"the {what} is {width}x{height} but the track was made for "
            f"{track.width}x{track.height}"
        )
    if width % 2 or height % 2:
        raise BadInput(f"the {what} must have an even width and height for yuv420p output")
    if stream.frames and stream.frames != track.frame_count:
        raise BadInput(
            f"the {what} has {stream.frames} frames but the track describes {track.frame_count}"
        )


def composite(
    job: CompositeJob, settings: EncodeSettings, on_progress: Callable[[int, int], None]
) -> int:
    """Composite the photo into every frame of the template and return the frame count."""
    track = job.track
    # x264's threads already fill the cores; OpenCV's own pool would only fight them.
    cv2.setNumThreads(1)
    source = open_video(job.video, "template video")
    matte = open_video(job.matte, "matte video") if job.matte else None
    audio_source = open_video(job.video, "template video")
    try:
        check_template(source, track, "template video")
        if matte is not None:
            check_template(matte, track, "matte video")
            matte.streams.video[0].thread_type = "AUTO"
        in_video = source.streams.video[0]
        in_video.thread_type = "AUTO"
        ctx = in_video.codec_context
        placer = PhotoPlacer(
            job.photo, space_for(ctx.colorspace, ctx.color_range, ctx.height), track.feather_px
        )
        poster_frame = measure_placement(track).largest_frame if job.poster else -1
        with av.open(str(job.output), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            encoder = out.add_stream(
                "libx264",
                rate=track.fps,
                options={"crf": str(settings.crf), "preset": settings.preset},
            )
            encoder.width, encoder.height, encoder.pix_fmt = ctx.width, ctx.height, "yuv420p"
            encoder.codec_context.thread_count = settings.threads
            for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
                setattr(encoder.codec_context, attr, getattr(ctx, attr))
            audio = _AudioCopier(audio_source, out)
            frames = _run_pipeline(
                source,
                matte,
                placer,
                track,
                job.poster,
                poster_frame,
                lambda frame: _encode(encoder, frame, out, audio),
                on_progress,
            )
            _encode(encoder, None, out, audio)
            audio.flush()
        return frames
    finally:
        for container in (source, matte, audio_source):
            if container is not None:
                container.close()


def _encode(
    encoder: av.VideoStream,
    frame: av.VideoFrame | None,
    out: av.container.OutputContainer,
    audio: _AudioCopier,
) -> None:
    """Encode one frame (None flushes) and mux its packets with the audio that goes before."""
    for packet in encoder.encode(frame):
        if packet.dts is not None and packet.time_base is not None:
            audio.mux_until(float(packet.dts * packet.time_base) + _AUDIO_LEAD_S)
        out.mux(packet)


class _AudioCopier:
    """Copy the template's audio packets into the output, interleaved with the video."""

    def __init__(
        self, source: av.container.InputContainer, out: av.container.OutputContainer
    ) -> None:
        self._packets: Iterator[av.Packet[Any]] | None = None
        self._pending: av.Packet[Any] | None = None
        self._out = out
        if source.streams.audio:
            in_audio = source.streams.audio[0]
            self._stream = out.add_stream_from_template(in_audio)
            self._packets = source.demux(in_audio)

    def mux_until(self, seconds: float | None) -> None:
        """Mux audio packets that start before the given time (None: all the rest)."""
        if self._packets is None:
            return
        out = self._out
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                return
            if packet.dts is None:
                continue  # demuxer's flush marker
            starts = float(packet.dts * packet.time_base) if packet.time_base else 0.0
            if seconds is not None and starts > seconds:
                self._pending = packet
                return
            packet.stream = self._stream
            out.mux(packet)

    def flush(self) -> None:
        """Mux whatever audio is left."""
        self.mux_until(None)


def plane_array(frame: av.VideoFrame, index: int) -> Plane:
    """Return a writable numpy view of one plane, without the line padding."""
    plane = frame.planes[index]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8)
    return as_plane(rows.reshape(plane.height, plane.line_size)[:, : plane.width])


def _run_pipeline(
    source: av.container.InputContainer,
    matte: av.container.InputContainer | None,
    placer: PhotoPlacer,
    track: Track,
    poster: Path | None,
    poster_frame: int,
    consume: Callable[[av.VideoFrame], None],
    on_progress: Callable[[int, int], None],
) -> int:
    """Decode and composite in a worker thread; encode in this one. Return frames written."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_FRAMES)
    stop = threading.Event()
    time_base = Fraction(1) / track.fps

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        _yield_to_encoder()
        try:
            mattes = matte.decode(video=0) if matte is not None else None
            for index, frame in enumerate(source.decode(source.streams.video[0])):
                if index >= track.frame_count:
                    raise BadInput(
                        f"the template video has more frames than the {track.frame_count} "
                        "the track describes"
                    )
                frame = _writable_yuv420p(frame)
                matte_y = None
                if mattes is not None:
                    matte_frame = next(mattes, None)
                    if matte_frame is None:
                        raise BadInput("the matte video is shorter than the template video")
                    matte_y = plane_array(_yuv420p(matte_frame), 0)
                planes = (plane_array(frame, 0), plane_array(frame, 1), plane_array(frame, 2))
                placer.place(planes, track.quad_at(index), matte_y)
                if index == poster_frame and poster is not None:
                    frame.to_image().save(poster, format="JPEG", quality=88)  # type: ignore[no-untyped-call]
                frame.pts, frame.time_base = index, time_base
                # The template's keyframe pattern is no reason to force ours.
                frame.pict_type = PictureType.NONE
                if not put(frame):
                    return
            put(_END)
        except av.InvalidDataError as exc:
            put(BadInput(f"the template or matte video is damaged: {exc}"))
        except BaseException as exc:  # handed to the main thread, which re-raises it
            put(exc)

    worker = threading.Thread(target=produce, name="composite", daemon=True)
    worker.start()
    done = 0
    try:
        while True:
            item = handoff.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, av.VideoFrame)
            consume(item)
            done += 1
            on_progress(done, track.frame_count)
    finally:
        stop.set()
        worker.join()
    if done != track.frame_count:
        raise BadInput(
            f"the template video has {done} frames but the track describes {track.frame_count}"
        )
    return done


def _yield_to_encoder() -> None:
    """Lower this thread's priority, so x264's threads get the CPU whenever they can use it.

    The encoder is the bottleneck and the queue is usually full, so decoding and compositing
    fit in the cycles x264 leaves idle. The decoder's own threads are started from this
    thread on first use and inherit its niceness.
    """
    # Off Linux, or where it is not allowed, only speed is at stake.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _WORKER_NICENESS)


def _yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """Return the frame in yuv420p, converting only the rare template stored otherwise."""
    if frame.format.name == "yuv420p":
        return frame
    return frame.reformat(format="yuv420p")


def _writable_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """Return a yuv420p frame we may draw on without touching the decoder's reference frames."""
    frame = _yuv420p(frame)
    frame.make_writable()
    return frame
