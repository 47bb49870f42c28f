"""The eight ODIR-5K labels."""

from __future__ import annotations

from typing import Literal

#: the label codes, in the order of the ODIR-5K annotation columns
LABELS: tuple[str, ...] = ("N", "D", "G", "C", "A", "H", "M", "O")

LABEL_NAMES: dict[str, str] = {
    "N": "Normal",
    "D": "Diabetes",
    "G": "Glaucoma",
    "C": "Cataract",
    "A": "Age-related macular degeneration",
    "H": "Hypertension",
    "M": "Pathological myopia",
    "O": "Other diseases or abnormalities",
}

Label = Literal["N", "D", "G", "C", "A", "H", "M", "O"]
