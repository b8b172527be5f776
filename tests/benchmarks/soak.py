"""The whole system under faults: real composites while its parts are killed and restarted.

    .venv/bin/python -m tests.benchmarks.soak

On the local stack (embedded PostgreSQL and Redis, ``python -m backend``, two
``clipyard worker`` pools with the reconciler, the local container backend, the real
compositor on the small ``postcard`` template) an operator submits a 200-row batch
(``max_runtime_s`` 60) whose budget covers about half of it, priced from a measured
composite, while a user submits an interactive job every few seconds, all through the
API. Clients retry as real ones do (same row ids and idempotency keys).

One at a time, at seeded random moments, a fault injector SIGKILLs a busy task
manager's process group (twice) and every manager at once, SIGSTOPs a busy manager for
three lease TTLs, kills and restarts the API (twice, and once halfway through a large
upload), restarts Redis with its data gone (twice) and takes it away for 20 s, restarts
PostgreSQL (twice) and SIGKILLs a running container (twice). Each fault's start and end
go to stderr. Faults strike until the batch pauses on its budget and twice while it is
paused; its spend is then checked against the stated bound (``batch_spend_bound``) and
its books (its runs' bills against its spend), and the budget is raised through the API.
The remaining faults strike while the rest drains; the last one stops PostgreSQL for a
minute just after a burst of fresh jobs, and the drain is timed from its end.

Then: jobs lost, jobs stuck, duplicates (a watcher samples the compositor processes all
along, so a job that ever had two containers at once counts even if the database never
knew), leaked containers, undecodable outputs, attempts beyond the first that no killed
container explains, spend against the bound (at the pause and at the end) and the
books. The machinery is shared with ``soak_aci`` (``tests/benchmarks/soaklib/``).
"""

from __future__ import annotations

from tests.benchmarks.soaklib.platforms import LocalPlatform
from tests.benchmarks.soaklib.run import run_soak


def main() -> None:
    """Run the soak on the local backend and print its figures."""
    run_soak(LocalPlatform())


if __name__ == "__main__":
    main()
