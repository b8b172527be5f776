"""The soak of ``soak.py`` with the managers on the aci backend, against the ARM emulator.

    .venv/bin/python -m tests.benchmarks.soak_aci

The same stack, load, budget and faults as ``tests.benchmarks.soak``, except that every
container is an ACI container group the real Azure SDK creates in the ARM emulator
(``tests/armemulator/``, in a process of its own), which runs the compositor as a local
process. ARM's own faults strike too: a burst of 429s (with Retry-After) on reads,
listings and creates while a killed manager's run is being adopted, a storm of 503s on
every request, and a slow region whose groups take 15 s to provision. Leaked containers
are the groups left in the emulator after the drain and the janitor's time. Metrics are
prefixed ``soak_aci.``.
"""

from __future__ import annotations

from tests.benchmarks.soaklib.platforms import AciPlatform
from tests.benchmarks.soaklib.run import run_soak


def main() -> None:
    """Run the soak on the aci backend and print its figures."""
    run_soak(AciPlatform())


if __name__ == "__main__":
    main()
