"""Typed records of a run folder's documents: the base class, read and written through one
schema.

A record is a pydantic model, as timm types a model's ``PretrainedCfg``: the fields every
reader relies on are declared (with their types and defaults, so that an older run's file
reads too), anything else a writer adds is kept as it was (``extra="allow"``). Reading a file
that does not match names the file and the field (:meth:`Record.read`), so that a damaged or
foreign document is a :class:`~odirkit.errors.RunError`, never a ``KeyError`` three modules
later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from odirkit.errors import RunError
from odirkit.files import write_json
from odirkit.runs.documents import _read_json


class Record(BaseModel):
    """A JSON document of a run folder: declared fields typed, the others kept."""

    model_config = ConfigDict(extra="allow")
    #: what the document is, in words (for errors)
    DOCUMENT: ClassVar[str] = "a run document"

    @classmethod
    def from_json(cls, data: Any, where: str | Path) -> Any:
        """The record of ``data`` (a parsed JSON document).

        Raises:
            RunError: ``data`` is not this document, naming ``where`` and the first field
                that does not match.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "the document"
            raise RunError(
                f"{where}: not {cls.DOCUMENT} as odirkit writes it ({field}: "
                f"{first['msg']}); was another file saved over it?"
            ) from None

    @classmethod
    def read(cls, path: Path, what: str) -> Any:
        """The record stored at ``path``.

        Raises:
            RunError: the file is missing (``what`` says what it would have been), damaged,
                or not this document.
        """
        return cls.from_json(_read_json(path, what), path)

    def to_json(self) -> dict[str, Any]:
        """The document as JSON data: the fields its writer gave (defaults it left out stay
        out) and the extra ones."""
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, path: Path) -> None:
        """Write the document atomically to ``path``."""
        write_json(path, self.to_json())
