"""clipyard's domain: jobs, runs, supervision, container backends and storage.

Nothing here imports Flask or the ``backend`` package; the API depends on this, never
the other way round.
"""
