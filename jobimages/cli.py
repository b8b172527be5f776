"""``clipyard-composite``: the container entry point (a placeholder until issue 3)."""

from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2


def main() -> None:
    """Refuse every invocation: the compositor is not implemented yet."""
    print("clipyard-composite: not implemented", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
