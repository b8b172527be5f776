"""Supervision: one job attempt's whole life, and the processes that drive it.

Holds the attempt's life (``supervisor``), its admission (``admission``), the fenced
lease (``leases``), the container's spec and log (``containerspec``, ``containerlog``),
progress tracking (``progress``), finishing (``finishing``), the reconciler, the
TaskTiger task and the worker process.

May import the domain (models, states, transitions, cost, settings), ``backends`` and
``storage``; nothing outside ``taskmanager`` but libraries. Nothing in ``backends`` or
``storage`` imports this package, and neither does the API.
"""
