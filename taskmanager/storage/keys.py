"""Where each kind of blob lives: one function per kind, and key validation.

Layout: ``uploads/{user}/{id}``, ``templates/{name}/{file}``,
``outputs/{job}/{attempt}/{file}``, ``logs/{job}/{attempt}-{lease token}.log``.
"""

from __future__ import annotations

import re
import uuid

from taskmanager.storage.base import InvalidKey

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def validate_key(key: str) -> str:
    """Return ``key`` if every segment is a plain name; raise ``InvalidKey`` otherwise.

    Rejects ``..``, absolute paths, empty segments and unusual characters, so a key can
    never name a file outside the local store or a surprising blob name.
    """
    segments = key.split("/")
    if not key or len(key) > 1024 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise InvalidKey(f"invalid blob key {key!r}: use '/'-separated names of [A-Za-z0-9._-]")
    if any(s in {".", ".."} or s.endswith(".") for s in segments):
        raise InvalidKey(f"invalid blob key {key!r}: segments may not be or end with '.'")
    return key


def upload_key(user_id: uuid.UUID, upload_id: uuid.UUID) -> str:
    """Return the key of a user's uploaded photo."""
    return f"uploads/{user_id}/{upload_id}"


def template_key(name: str, filename: str) -> str:
    """Return the key of one file of a template (video, track, matte, poster)."""
    return validate_key(f"templates/{name}/{filename}")


def output_key(job_id: uuid.UUID, attempt: int, filename: str) -> str:
    """Return the key of one output file (video, poster) of a job's attempt.

    Per attempt: a retry that starts while the previous attempt's container is still
    being removed (a slow or failed delete) writes beside it, never over it.
    """
    return validate_key(f"outputs/{job_id}/{attempt}/{filename}")


def log_key(job_id: uuid.UUID, attempt: int, lease_token: int) -> str:
    """Return the key of one attempt's full container log, as saved under ``lease_token``.

    The token is in the key because the log is uploaded before the finishing transaction
    checks the lease: a manager that lost the run writes beside the new owner's copy,
    never over it, and only the owner's key is recorded on the run.
    """
    return f"logs/{job_id}/{attempt}-{lease_token}.log"
