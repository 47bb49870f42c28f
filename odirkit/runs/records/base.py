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

import math
import numbers
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError

from odirkit.errors import RunError
from odirkit.files import write_json
from odirkit.runs.documents import _read_json


class Record(BaseModel):
    """A JSON document of a run folder: declared fields typed, the others kept."""

    model_config = ConfigDict(extra="allow")
    #: what the document is, in words (for errors)
    DOCUMENT: ClassVar[str] = "a run document"
    #: how the file is written: ``json``, pydantic's JSON mode (a NaN or an infinity in a
    #: free-form part is written ``null``: ``metrics.json`` has always been so), or
    #: ``python``, the values as they are, through :func:`odirkit.files.write_json` (``NaN``
    #: stays ``NaN``, a numpy number is a number: ``config.json``, ``data.json`` and
    #: ``environment.json`` were written so before they had records)
    WRITTEN: ClassVar[Literal["json", "python"]] = "json"

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
            raise refusal(exc, where, cls.DOCUMENT) from None

    @classmethod
    def read(cls, path: Path, what: str) -> Any:
        """The record stored at ``path``.

        Raises:
            RunError: the file is missing (``what`` says what it would have been), damaged,
                or not this document.
        """
        return cls.from_json(_read_json(path, what), path)

    def to_json(self) -> dict[str, Any]:
        """The document as its file holds it: the fields its writer gave, in the order they
        are declared (defaults it left out stay out), then the extra ones in the order given
        (see :attr:`WRITTEN`)."""
        return self.model_dump(mode=self.WRITTEN, exclude_unset=True)

    def write(self, path: Path) -> None:
        """Write the document atomically to ``path``."""
        write_json(path, self.to_json())


def refusal(exc: ValidationError, where: str | Path, document: str) -> RunError:
    """The error of a file that is not ``document``: its name, the first field that does not
    match and why."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "the document"
    return RunError(
        f"{where}: not {document} as odirkit writes it ({field}: {first['msg']}); was "
        "another file saved over it?"
    )


def _number(value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("not a number")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _finite_or_null(value: int | float | None) -> int | float | None:
    return value if value is None or math.isfinite(value) else None


#: a number of a sub-document as its writer gave it (an int stays an int, a float a float),
#: ``None`` where undefined; written ``null`` where it is NaN or infinite, as these
#: sub-documents of ``metrics.json`` were written while they were untyped
Figure = Annotated[
    int | float | None,
    PlainValidator(_number),
    PlainSerializer(_finite_or_null, when_used="json"),
]
