"""clipyard's Flask API: records and enqueues jobs, serves the web app.

It depends on ``taskmanager`` for the domain; nothing there depends on it.
"""

from __future__ import annotations

from backend.app import create_app

__all__ = ["create_app"]
