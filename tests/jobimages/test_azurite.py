"""Round trip through Azurite: read-only SAS URLs in, a write-only SAS URL out."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
from PIL import Image

from jobimages.template import TemplateInfo
from tests.jobimages.conftest import run_cli

pytestmark = pytest.mark.azurite


def _sas_url(azurite: Any, container: str, blob: str, permission: BlobSasPermissions) -> str:
    """Mint a short-lived SAS URL for one blob."""
    token = generate_blob_sas(
        account_name=azurite.account_name,
        container_name=container,
        blob_name=blob,
        account_key=azurite.account_key,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(minutes=15),
    )
    return f"{azurite.blob_endpoint}/{container}/{blob}?{token}"


@pytest.mark.parametrize("block_kib", [None, 64], ids=["single-put", "block-list"])
def test_round_trip_with_read_only_and_write_only_sas(
    azurite: Any, frame_template: TemplateInfo, tmp_path: Path, block_kib: int | None
) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    name = f"jobimages-{block_kib or 'single'}"
    container = service.get_container_client(name)
    container.create_container()
    photo = tmp_path / "photo.png"
    Image.new("RGBA", (300, 200), (250, 120, 0, 255)).save(photo)
    read = BlobSasPermissions(read=True)
    urls = {}
    for blob, path in (
        ("template.mp4", frame_template.video),
        ("track.json", frame_template.track),
        ("photo.png", photo),
    ):
        container.upload_blob(blob, path.read_bytes())
        urls[blob] = _sas_url(azurite, name, blob, read)
    write_only = BlobSasPermissions(create=True, write=True)
    output_url = _sas_url(azurite, name, "out.mp4", write_only)
    poster_url = _sas_url(azurite, name, "poster.jpg", write_only)
    env = {"JOBIMAGE_UPLOAD_BLOCK_BYTES": str(block_kib * 1024)} if block_kib else {}

    result = run_cli(
        "run",
        "--template-video",
        urls["template.mp4"],
        "--track",
        urls["track.json"],
        "--image",
        urls["photo.png"],
        "--output",
        output_url,
        "--poster",
        poster_url,
        "--preset",
        "ultrafast",
        env=env,
    )

    assert result.code == 0, result.stderr
    # The output SAS really is write-only: reading through it is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(output_url)
    assert refused.value.code == 403
    blob = container.get_blob_client("out.mp4")
    assert blob.get_blob_properties().content_settings.content_type == "video/mp4"
    local = tmp_path / "out.mp4"
    local.write_bytes(blob.download_blob().readall())
    assert local.stat().st_size == result.events[-1]["output_bytes"]
    with av.open(str(local)) as video:
        assert video.streams.video[0].frames == frame_template.frame_count
        assert len(video.streams.audio) == 1
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(container.get_blob_client("poster.jpg").download_blob().readall())
    with Image.open(poster) as image:
        assert image.size == (frame_template.width, frame_template.height)
    signatures = [url.split("sig=")[1].split("&")[0] for url in [*urls.values(), output_url]]
    for signature in signatures:
        assert signature not in result.stdout + result.stderr
