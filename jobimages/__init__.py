"""Composite a user's photo into a template video inside a short-lived job container.

The package stands alone: it talks to the world only through argv, the environment,
URLs, JSON lines on stdout and its exit code (see the container contract).
"""

from __future__ import annotations
