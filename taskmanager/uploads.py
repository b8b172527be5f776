"""Photo uploads: decode for real, refuse what is not a sane photo, store a clean copy.

A photo is judged by its content, never its name: it must decode as JPEG, PNG or WebP,
stay within the byte and pixel limits and decode completely. The stored copy has the EXIF
orientation applied and no metadata at all (no GPS, no camera).

Checking is bounded in memory, because a file of a few kilobytes can claim 40
megapixels. Pillow's ``open`` reads only the header, so the pixel count is known before
anything is decoded: a photo over the limit is refused then, except a JPEG of up to four
times the limit, which libjpeg decodes at half size (its DCT scaling, at no extra
cost), and which is stored at that size. After that one full-size copy is held at a time
(a conversion or a rotation briefly holds its source and its result). A WebP is stored
as JPEG (PNG when it has transparency): those encoders stream from the decoded image,
where WebP's makes copies of its own worth several times the photo, and takes seconds.
"""

from __future__ import annotations

import hashlib
import io
import math
import tempfile
import uuid
from contextlib import closing
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.errors import DomainError
from taskmanager.models import Upload
from taskmanager.storage import Storage
from taskmanager.storage.keys import upload_key

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_CHUNK = 1024 * 1024
# Spooled in memory up to this size, then on disk.
_SPOOL_BYTES = 4 * 1024 * 1024
# The reductions libjpeg applies while decoding (its DCT scaling), smallest first.
_JPEG_REDUCTIONS = (2, 4)
# How many times the pixel limit a JPEG may claim: it is decoded at half its size (a
# quarter of the pixels), but a progressive JPEG keeps every coefficient (3 bytes a
# pixel) while it decodes, so 4 already costs about what a WebP at the limit does.
_JPEG_PIXELS_OVER_LIMIT = 4
# Modes that carry transparency: stored as RGBA PNG; everything else as RGB.
_TRANSPARENT_MODES = frozenset({"RGBA", "LA", "P", "PA"})


class UploadError(DomainError):
    """Base of the upload service's errors (the API maps each to a status code)."""


class InvalidUpload(UploadError):
    """Base of the refusals of a file's content; ``field`` names the offending part."""

    field = "file"


class EmptyUpload(InvalidUpload):
    """The file has no bytes."""


class UploadTooLarge(InvalidUpload):
    """The file has more bytes than allowed; ``limit`` says how many are."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnsupportedImage(InvalidUpload):
    """The file is not a JPEG, PNG or WebP image (whatever its name says)."""


class ImageTooLarge(InvalidUpload):
    """The image has more pixels than allowed; ``limit`` says how many are."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UploadNotFound(UploadError):
    """No such upload (or not one the caller may see)."""


class CorruptImage(InvalidUpload):
    """The image's header is fine but its data does not decode (e.g. truncated)."""


@dataclass(frozen=True)
class CleanPhoto:
    """A decoded, normalised photo ready to store."""

    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str


def _spool(source: IO[bytes], max_bytes: int) -> tuple[IO[bytes], str, int]:
    """Copy ``source`` aside, hashing it; refuse it as soon as it passes ``max_bytes``."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    digest = hashlib.sha256()
    total = 0
    while chunk := source.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            spool.close()
            raise UploadTooLarge(f"the photo is larger than {max_bytes} bytes", max_bytes)
        digest.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    return spool, digest.hexdigest(), total


def clean_photo(source: IO[bytes], *, max_bytes: int, max_pixels: int) -> CleanPhoto:
    """Validate and normalise a photo; raise an ``UploadError`` naming what is wrong."""
    spool, sha256, size = _spool(source, max_bytes)
    with spool:
        if size == 0:
            raise EmptyUpload("the file is empty")
        with closing(_open_within(spool, max_pixels)) as image:
            fmt, mode = _stored_as(image)
            with closing(_decode_upright(image, mode)) as upright:
                return _encode(upright, fmt, sha256)


def _open_within(spool: IO[bytes], max_pixels: int) -> ImageFile.ImageFile:
    """Read the header; refuse what is not a still photo within ``max_pixels``.

    Nothing is decoded yet; a JPEG over the limit is set to decode reduced instead.
    """
    try:
        image = Image.open(spool, formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(
            "not a JPEG, PNG or WebP image (the content decides, not the name)"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (MAX_IMAGE_PIXELS) lies far above ours: only bombs reach it.
        # Its warning is left to the process's filters (``catch_warnings`` would change
        # them for every thread at once): the header check below decides either way.
        raise ImageTooLarge(
            f"the image has far more than the {max_pixels} pixels allowed", max_pixels
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"the image header is damaged: {exc}") from exc
    try:
        if getattr(image, "n_frames", 1) > 1:
            raise UnsupportedImage("animated images are not supported")
        _reduce_within(image, max_pixels)
    except BaseException:
        image.close()
        raise
    return image


def _reduce_within(image: ImageFile.ImageFile, max_pixels: int) -> None:
    """Make ``image`` decode within ``max_pixels`` (a JPEG reduced), or refuse it."""
    width, height = image.size
    if width * height <= max_pixels:
        return
    if image.format != "JPEG":
        raise ImageTooLarge(
            f"the image is {width}x{height}, more than the {max_pixels} pixels allowed",
            max_pixels,
        )
    if width * height <= _JPEG_PIXELS_OVER_LIMIT * max_pixels:
        for factor in _JPEG_REDUCTIONS:
            if math.ceil(width / factor) * math.ceil(height / factor) <= max_pixels:
                wanted = (max(1, width // factor), max(1, height // factor))
                is_reduced = image.draft(None, wanted) is not None
                if is_reduced and image.size[0] * image.size[1] <= max_pixels:
                    return
                break
    raise ImageTooLarge(
        f"the image is {width}x{height}, more than the {max_pixels} pixels allowed (a JPEG "
        f"is decoded at half size up to {_JPEG_PIXELS_OVER_LIMIT * max_pixels} pixels)",
        max_pixels,
    )


def _stored_as(image: Image.Image) -> tuple[str, str]:
    """Return the format and mode the photo is stored in.

    JPEG stays JPEG and PNG stays PNG; WebP becomes JPEG, or PNG when it has transparency.
    """
    if image.format != "JPEG" and image.mode in _TRANSPARENT_MODES:
        return "PNG", "RGBA"
    return ("PNG" if image.format == "PNG" else "JPEG"), "RGB"


def _decode_upright(image: ImageFile.ImageFile, mode: str) -> Image.Image:
    """Decode ``image`` in ``mode``, upright and without metadata, one copy at a time.

    Returns ``image`` itself when it already has ``mode``; else its converted copy, and
    ``image`` is closed.
    """
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"the image data is damaged or truncated: {exc}") from exc
    working: Image.Image = image
    if image.mode != mode:
        working = image.convert(mode)  # keeps ``info``, so the EXIF orientation
        image.close()
    try:
        # In place: the rotated pixels replace the others, which are freed at once.
        ImageOps.exif_transpose(working, in_place=True)
    except (OSError, SyntaxError, ValueError) as exc:
        working.close()
        raise CorruptImage(f"the image's EXIF data is damaged: {exc}") from exc
    # Encoders carry some of ``info`` over (PNG its ICC profile, JPEG its comment).
    working.info = {}
    return working


def _encode(image: Image.Image, fmt: str, sha256: str) -> CleanPhoto:
    """Encode the decoded photo; both encoders stream from it, adding no full copy."""
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, "JPEG", quality=92)
    else:
        image.save(out, "PNG")
    width, height = image.size
    return CleanPhoto(out.getvalue(), ALLOWED_FORMATS[fmt], width, height, sha256)


def _printable(filename: str | None) -> str | None:
    """Return the name without control characters (PostgreSQL refuses NUL), at most 255."""
    cleaned = "".join(c for c in filename or "" if c.isprintable())[:255]
    return cleaned or None


def store_upload(
    sessions: sessionmaker[Session],
    storage: Storage,
    owner_id: uuid.UUID,
    source: IO[bytes],
    *,
    filename: str | None,
    max_bytes: int,
    max_pixels: int,
) -> Upload:
    """Validate, normalise and store a user's photo; return its row."""
    photo = clean_photo(source, max_bytes=max_bytes, max_pixels=max_pixels)
    upload_id = uuid.uuid4()
    key = upload_key(owner_id, upload_id)
    storage.upload(key, io.BytesIO(photo.data), content_type=photo.content_type)
    upload = Upload(
        id=upload_id,
        owner_id=owner_id,
        blob_key=key,
        content_type=photo.content_type,
        size_bytes=len(photo.data),
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        original_filename=_printable(filename),
    )
    try:
        with sessions.begin() as session:
            session.add(upload)
    except Exception:
        storage.delete(key)
        raise
    return upload


def get_upload(
    sessions: sessionmaker[Session], upload_id: uuid.UUID, owner_id: uuid.UUID | None
) -> Upload | None:
    """Return the upload if it exists and (with ``owner_id``) belongs to that user."""
    with sessions() as session:
        upload = session.get(Upload, upload_id)
    if upload is None or (owner_id is not None and upload.owner_id != owner_id):
        return None
    return upload


def find_uploads_by_sha256(
    sessions: sessionmaker[Session], owner_id: uuid.UUID, sha256: str
) -> list[Upload]:
    """Return the owner's uploads of the file with this SHA-256 (as sent), newest first.

    Lets a client skip uploading a photo it already sent (the batch CLI does).
    """
    with sessions() as session:
        return list(
            session.scalars(
                select(Upload)
                .where(Upload.owner_id == owner_id, Upload.sha256 == sha256.lower())
                .order_by(Upload.created_at.desc())
                .limit(10)
            )
        )
