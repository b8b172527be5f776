"""``clipyard``: the operators' and administrators' command line.

Exit codes: 0 success; 1 unexpected error; 2 bad usage or input (the message names
what was wrong); 3 a service (database, Redis, storage, the API) could not be reached;
4 ``batch watch``: every job ended but not all succeeded; ``submit --wait``: the job
ended without a video.
"""

from __future__ import annotations

import click

from taskmanager.cli.batch import batch
from taskmanager.cli.db import db
from taskmanager.cli.login import login, logout
from taskmanager.cli.submit import submit
from taskmanager.cli.templates import templates
from taskmanager.cli.up import services, up
from taskmanager.cli.users import user
from taskmanager.cli.worker import reconcile_once, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clipyard")
def main() -> None:
    """Run and administer clipyard."""


main.add_command(db)
main.add_command(services)
main.add_command(up)
main.add_command(worker)
main.add_command(reconcile_once)
main.add_command(user)
main.add_command(templates)
main.add_command(login)
main.add_command(logout)
main.add_command(batch)
main.add_command(submit)
