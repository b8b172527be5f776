"""Uploads: real decoding, every refusal as a clear 4xx, a clean upright stored copy."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, PngImagePlugin, WebPImagePlugin

from taskmanager.models import Upload
from tests.backend.conftest import Identity, png_bytes, upload_photo


def _post(client: FlaskClient, who: Identity, data: bytes, name: str = "photo.png") -> object:
    return client.post(
        "/api/v1/uploads",
        data={"file": (io.BytesIO(data), name)},
        headers=who.headers,
        content_type="multipart/form-data",
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(side: int = 50_000) -> bytes:
    """A PNG that claims side x side pixels (its pixel data would be gigabytes)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\0" + b"\0" * side
    data = zlib.compress(row * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _jpeg_with_exif_orientation() -> bytes:
    """A 60x20 JPEG (left half red) tagged 'rotate 90 CW to view' (orientation 6)."""
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "SecretCam"  # make
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def test_accepted_photo_is_upright_and_has_no_metadata(
    app: Flask, client: FlaskClient, alice: Identity
) -> None:
    upload_id = upload_photo(client, alice, _jpeg_with_exif_orientation())
    services = app.extensions["clipyard"]
    with services.sessions() as session:
        row = session.get(Upload, upload_id)
    assert row is not None
    assert (row.width, row.height) == (20, 60)
    assert row.content_type == "image/jpeg"
    assert len(row.sha256) == 64
    stored = Image.open(io.BytesIO(b"".join(services.storage.iter_bytes(row.blob_key))))
    assert stored.size == (20, 60)
    assert not stored.getexif()
    assert "exif" not in stored.info
    # Rotated 90 degrees clockwise: the red left half is now on top.
    top = stored.getpixel((10, 5))
    bottom = stored.getpixel((10, 55))
    assert top[0] > 200  # type: ignore[index]
    assert top[2] < 60  # type: ignore[index]
    assert bottom[2] > 200  # type: ignore[index]
    assert bottom[0] < 60  # type: ignore[index]
    shown = client.get(f"/api/v1/uploads/{upload_id}", headers=alice.headers)
    assert shown.status_code == 200
    assert shown.json["size_bytes"] == row.size_bytes  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "name", "status", "words"),
    [
        (b"", "empty.png", 422, "empty"),
        (b"just some text, honestly\n" * 10, "notes.png", 415, "JPEG, PNG or WebP"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "a.svg", 415, "PNG"),
        (_png_bomb(), "bomb.png", 422, "pixels"),
    ],
)
def test_refusals(
    client: FlaskClient, alice: Identity, data: bytes, name: str, status: int, words: str
) -> None:
    response = _post(client, alice, data, name)
    assert response.status_code == status, response.json  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    assert response.json["field"] == "file"  # type: ignore[attr-defined]
    assert words in response.json["detail"]  # type: ignore[attr-defined]


def test_bomb_names_the_pixel_limit(app: Flask, client: FlaskClient, alice: Identity) -> None:
    response = _post(client, alice, _png_bomb(), "bomb.png")
    limit = app.extensions["clipyard"].settings.max_upload_pixels
    assert response.json["limit"] == limit  # type: ignore[attr-defined]


def _tiny_webp(width: int, height: int) -> bytes:
    """A lossless WebP of one colour, a few dozen bytes whatever its size.

    Encoded small, then its VP8L header widened: one colour decodes at any size, so this
    is a real image of ``width`` x ``height`` (encoding it at that size costs seconds).
    """
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 90, 160)).save(out, "WEBP", lossless=True)
    data = bytearray(out.getvalue())
    assert data[12:16] == b"VP8L"
    assert data[20] == 0x2F  # the lossless signature; the size follows
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | (width - 1) | (height - 1) << 14)
    return bytes(data)


def test_a_tiny_webp_of_40_megapixels_is_refused_before_decoding(
    app: Flask, client: FlaskClient, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = _tiny_webp(8000, 5000)
    assert len(photo) < 100
    assert Image.open(io.BytesIO(photo)).size == (8000, 5000)

    def decode(self: WebPImagePlugin.WebPImageFile) -> None:
        raise AssertionError("the photo was decoded")

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", decode)
    response = _post(client, alice, photo, "tiny.webp")
    assert response.status_code == 422, response.json  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    limit = app.extensions["clipyard"].settings.max_upload_pixels
    assert limit == 24_000_000
    assert response.json["limit"] == limit  # type: ignore[attr-defined]
    assert response.json["field"] == "file"  # type: ignore[attr-defined]
    assert f"8000x5000, more than the {limit} pixels" in response.json["detail"]  # type: ignore[attr-defined]


def test_a_webp_is_stored_upright_as_jpeg_or_png_with_transparency(
    app: Flask, client: FlaskClient, alice: Identity
) -> None:
    services = app.extensions["clipyard"]
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to view
    exif[0x010F] = "SecretCam"
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, exif=exif.tobytes(), icc_profile=b"not-a-real-icc")
    with services.sessions() as session:
        row = session.get(Upload, upload_photo(client, alice, out.getvalue()))
    assert row is not None
    assert (row.width, row.height, row.content_type) == (20, 60, "image/jpeg")
    stored = Image.open(io.BytesIO(b"".join(services.storage.iter_bytes(row.blob_key))))
    assert stored.format == "JPEG"
    assert not stored.getexif()
    assert "icc_profile" not in stored.info
    assert stored.getpixel((10, 5))[0] > 200  # type: ignore[index]  # red on top
    assert stored.getpixel((10, 55))[2] > 200  # type: ignore[index]

    out = io.BytesIO()
    Image.new("RGBA", (30, 10), (0, 255, 0, 100)).save(out, "WEBP", lossless=True)
    with services.sessions() as session:
        row = session.get(Upload, upload_photo(client, alice, out.getvalue()))
    assert row is not None
    assert row.content_type == "image/png"
    stored = Image.open(io.BytesIO(b"".join(services.storage.iter_bytes(row.blob_key))))
    assert stored.mode == "RGBA"
    assert stored.getpixel((5, 5)) == (0, 255, 0, 100)


def test_png_and_jpeg_metadata_is_stripped(
    app: Flask, client: FlaskClient, alice: Identity
) -> None:
    services = app.extensions["clipyard"]
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "someone")
    png, jpeg = io.BytesIO(), io.BytesIO()
    image = Image.new("RGB", (40, 30), (10, 200, 10))
    image.save(png, "PNG", pnginfo=text, exif=exif.tobytes(), icc_profile=b"not-an-icc")
    image.save(jpeg, "JPEG", comment=b"secret", exif=exif.tobytes(), icc_profile=b"not-an-icc")
    for data, fmt in ((png.getvalue(), "PNG"), (jpeg.getvalue(), "JPEG")):
        with services.sessions() as session:
            row = session.get(Upload, upload_photo(client, alice, data))
        assert row is not None
        stored = Image.open(io.BytesIO(b"".join(services.storage.iter_bytes(row.blob_key))))
        assert stored.format == fmt
        assert not stored.getexif()
        assert not {"icc_profile", "Author", "comment", "exif"} & set(stored.info)


def test_a_jpeg_over_the_pixel_limit_is_decoded_at_half_size(app: Flask, alice: Identity) -> None:
    services = app.extensions["clipyard"]
    services.settings = services.settings.model_copy(update={"max_upload_pixels": 1000})
    client = app.test_client()
    with services.sessions() as session:  # 60x20 = 1200 pixels, stored at 30x10 upright
        row = session.get(Upload, upload_photo(client, alice, _jpeg_with_exif_orientation()))
    assert row is not None
    assert (row.width, row.height) == (10, 30)
    stored = Image.open(io.BytesIO(b"".join(services.storage.iter_bytes(row.blob_key))))
    assert stored.size == (10, 30)
    assert stored.getpixel((5, 3))[0] > 200  # type: ignore[index]  # red on top

    too_large = io.BytesIO()
    Image.new("RGB", (100, 50)).save(too_large, "JPEG")  # over 4 times the limit
    response = _post(client, alice, too_large.getvalue(), "large.jpg")
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json["limit"] == 1000  # type: ignore[attr-defined]
    assert "100x50" in response.json["detail"]  # type: ignore[attr-defined]
    response = _post(client, alice, png_bytes(40, 30), "over.png")  # 1200: no reduced PNG
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "40x30, more than the 1000 pixels" in response.json["detail"]  # type: ignore[attr-defined]


def test_a_damaged_webp_header_is_422_not_500(client: FlaskClient, alice: Identity) -> None:
    response = _post(client, alice, _tiny_webp(8, 8)[:26], "cut.webp")
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json["field"] == "file"  # type: ignore[attr-defined]


def test_truncated_jpeg_is_refused(client: FlaskClient, alice: Identity) -> None:
    image = Image.effect_noise((256, 256), 64).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG")
    whole = out.getvalue()
    response = _post(client, alice, whole[: len(whole) // 2], "cut.jpg")
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "truncated" in response.json["detail"]  # type: ignore[attr-defined]


def test_oversized_body_is_413_naming_the_limit(app: Flask, alice: Identity) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    response = _post(app.test_client(), alice, png_bytes() + b"\0" * 20_000)
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert response.json["limit"] == 10_000  # type: ignore[attr-defined]


def test_photo_over_the_byte_limit_is_413(app: Flask, alice: Identity) -> None:
    services = app.extensions["clipyard"]
    services.settings = services.settings.model_copy(update={"max_upload_bytes": 1000})
    response = _post(app.test_client(), alice, png_bytes(300, 300, None) + b"\0" * 2000)
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert response.json["limit"] == 1000  # type: ignore[attr-defined]


def test_missing_file_field(client: FlaskClient, alice: Identity) -> None:
    response = client.post(
        "/api/v1/uploads",
        data={"other": "x"},
        headers=alice.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.json["field"] == "file"  # type: ignore[index]
    not_multipart = client.post("/api/v1/uploads", json={}, headers=alice.headers)
    assert not_multipart.status_code == 422


def test_other_users_upload_is_404(client: FlaskClient, alice: Identity, bob: Identity) -> None:
    upload_id = upload_photo(client, alice)
    assert client.get(f"/api/v1/uploads/{upload_id}", headers=bob.headers).status_code == 404
