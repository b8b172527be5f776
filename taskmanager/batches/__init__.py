"""Batches: cost-controlled groups of jobs run by operators.

Holds the batch service (``service``), a batch's jobs (``jobs``: submitting rows,
cancelling, retrying, reporting) and the manifest reader (``manifest``).

May import the domain (jobs, models, states, settings, cost); never ``supervision``,
``backends`` or the API.
"""
