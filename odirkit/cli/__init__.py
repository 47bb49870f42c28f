"""The ``odirkit`` command line.

One handler, on the command group (:class:`_Commands`), turns an
:class:`~odirkit.errors.OdirkitError` (a mistake in the input, not a bug) from
any command into one message on stderr and exit code 2, without a traceback;
anything else is a bug and keeps its traceback. Commands find the plugin
registry in ``ctx.obj`` (:class:`CliState`), set up by the group's callback.
"""

from __future__ import annotations

import sys

from odirkit.cli import applying, common, results, running, setup
from odirkit.cli.common import app
from odirkit.plugins import get_registry

#: the modules of the command line, each registering its commands on ``app`` when imported
MODULES = (common, running, setup, results, applying)

__all__ = ["MODULES", "app", "get_registry", "main"]


def main() -> None:
    """Entry point of the ``odirkit`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
