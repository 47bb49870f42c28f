"""An external collection as a finished run sees it (``[[evaluate]]``, ``odirkit evaluate``).

The collection's dataset plugin builds its sample table, which the core checks as it
checks any dataset's; a collection that comes split is scored on its test split (unless
``split = "all"``); and the labels the collection grades are found: those its plugin
declares (``attrs["odirkit_report"]["graded_labels"]``: the ``folder`` and ``table``
datasets list what their mapping can give), else those with at least one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.config import ExternalData
from odirkit.data.table import check_sample_table
from odirkit.errors import DataError, PluginError
from odirkit.labels import LABELS


@dataclass
class ExternalSamples:
    """The images of a collection to score, the labels it grades, and its plugin's report."""

    table: pd.DataFrame
    graded: list[str]
    report: dict[str, Any]

    def shared(self, labels: list[str]) -> tuple[list[str], list[str]]:
        """The run's ``labels`` the collection grades, and those it does not (not scored)."""
        return (
            [label for label in labels if label in self.graded],
            [label for label in labels if label not in self.graded],
        )


def external_samples(external: ExternalData) -> ExternalSamples:
    """Build and check the collection's sample table; keep its test split when it comes
    split (``split = "auto"`` or ``"test"``). Raises :class:`DataError` (a collection
    asked for its test split without one) and whatever the dataset plugin raises.

    Raises :class:`PluginError` when the plugin's ``graded_labels`` name an unknown label."""
    root = Path(external.root)
    raw = external.dataset.build(root=str(root))
    report = dict(getattr(raw, "attrs", {}).get("odirkit_report", {}))
    table = check_sample_table(raw, dataset=external.dataset.name, root=root)
    declared = report.get("graded_labels")
    if declared is not None:
        unknown = [label for label in declared if label not in LABELS]
        if unknown:
            raise PluginError(
                f"dataset {external.dataset.name!r}: graded_labels names {unknown}; labels are "
                f"{', '.join(LABELS)}"
            )
        graded = [label for label in LABELS if label in declared]
    else:
        graded = [label for label in LABELS if table[label].any()]
    mode = external.options.split
    has_test = "split" in table.columns and bool((table["split"] == "test").any())
    if mode == "test" and not has_test:
        raise DataError(
            f'{external.where} {root}: split = "test", but the collection has no test split; '
            'use split = "all" to score every image'
        )
    if has_test and mode != "all":
        table = table[table["split"] == "test"].reset_index(drop=True)
        chosen = "the collection's test split"
    else:
        chosen = "every image"
    return ExternalSamples(table, graded, {**report, "scored": chosen})
