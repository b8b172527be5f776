"""Photo uploads: decode for real, refuse what is not a sane photo, store a clean copy.

A photo is judged by its content, never its name: it must decode as JPEG, PNG or WebP,
stay within the byte and pixel limits (the pixel count is read from the header, so a
decompression bomb is refused before anything is decoded) and decode completely. The
stored copy has the EXIF orientation applied and no metadata at all (no GPS, no camera).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(spool, formats=list(ALLOWED_FORMATS))
            except UnidentifiedImageError as exc:
                raise UnsupportedImage(
                    "not a JPEG, PNG or WebP image (the content decides, not the name)"
                ) from exc
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageTooLarge(
                    f"the image has more than {max_pixels} pixels", max_pixels
                ) from exc
            with image:
                fmt = image.format or ""
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge(
                        f"the image is {width}x{height}, more than {max_pixels} pixels",
                        max_pixels,
                    )
                if getattr(image, "n_frames", 1) > 1:
                    raise UnsupportedImage("animated images are not supported")
                try:
                    image.load()
                    upright = ImageOps.exif_transpose(image)
                except (OSError, SyntaxError, ValueError) as exc:
                    raise CorruptImage(f"the image data is damaged or truncated: {exc}") from exc
                except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                    raise ImageTooLarge(
                        f"the image has more than {max_pixels} pixels", max_pixels
                    ) from exc
                return _encode(upright, fmt, sha256)


def _encode(image: Image.Image, fmt: str, sha256: str) -> CleanPhoto:
    """Re-encode ``image`` without any metadata (EXIF, ICC, XMP, text chunks)."""
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=92)
    else:
        fmt = "PNG" if fmt != "WEBP" else "WEBP"
        mode = "RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB"
        clean = Image.new(mode, image.size)
        clean.paste(image.convert(mode))
        clean.save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
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
