"""The soak's machinery, shared by its two variants (``soak`` and ``soak_aci``).

``run.run_soak`` drives one soak on a ``platforms.Platform``: where the containers run
(local process groups, or ACI groups in the ARM emulator) and the faults only that
platform has. Everything else (services, API, manager pools, load, faults, checks) is
the same code for both. A package, not a script: ``make bench`` runs every module in
``tests/benchmarks/`` and none of these is a benchmark on its own.
"""
