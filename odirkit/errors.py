"""Errors a user can act on.

Every error that comes from the user's input (an experiment file, a command
line, a dataset folder, an installed plugin) is an :class:`OdirkitError`. The
command line prints its message and exits with code 2, without a traceback.
Anything else that escapes is a bug in odirkit and keeps its traceback.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable


class OdirkitError(Exception):
    """Base class of the errors caused by user input; the message says what and where.

    ``where`` is the place the input came from (a file and table, a plugin call), kept
    apart from the ``message`` so that code which knows the place can add it
    (:meth:`at`) without editing the text; ``str(error)`` is both.
    """

    exit_code = 2

    def __init__(self, message: object = "", *, where: object | None = None) -> None:
        self.message = str(message)
        self.where = None if where is None else str(where)
        super().__init__(f"{self.where} {self.message}" if self.where else self.message)

    def at(self, where: object | None) -> OdirkitError:
        """This error, of the same type, said to come from ``where`` (outside any place
        it named already); unchanged when ``where`` is None."""
        if where is None:
            return self
        located = copy.copy(self)
        located.where = f"{where} {self.where}" if self.where else str(where)
        located.args = (f"{located.where} {self.message}",)
        return located


class ConfigError(OdirkitError):
    """An experiment file or an override is malformed or names something unknown."""


class PluginError(OdirkitError):
    """A plugin could not be loaded, registered, found or built."""


class PluginConflictError(PluginError):
    """Two plugins registered the same name for the same kind."""


class NotApplicable(ConfigError):
    """A method cannot apply to this model (Guided Grad-CAM on a network without ReLUs):
    the message says which method, which model and why, instead of an answer computed
    by something else under the method's name."""


class DataError(OdirkitError):
    """A dataset folder, table or image is missing or unreadable."""


class RunError(OdirkitError):
    """A run directory cannot be written, resumed or compared."""


class TrainingDiverged(OdirkitError):
    """The loss became NaN or infinite."""


def closest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
