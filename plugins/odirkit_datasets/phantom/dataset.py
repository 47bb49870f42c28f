"""The dataset plugin: the ``phantom`` factory (its parameters are the experiment's
``[data]`` keys), drawing the folder on first use, and its registration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field

import odirkit
from odirkit.api import progress_bar
from odirkit_datasets.phantom.folder import Settings, generate, load_table, needs_generation


def phantom(
    *,
    root: str,
    patients: Annotated[int, Field(ge=1)] = 400,
    size: Annotated[int, Field(ge=32, le=4096)] = 256,
    seed: Annotated[int, Field(ge=0)] = 0,
    difficulty: Literal["realistic", "easy"] = "realistic",
    label_noise: Annotated[float, Field(ge=0.0, le=0.5)] | None = None,
    camera_shift: bool = False,
) -> pd.DataFrame:
    """Synthetic fundus photographs in the ODIR-5K layout, generated into ``root`` on first use.

    patients: number of patients (two images each).
    size: height in pixels of the generated photographs (width is 1.25 times).
    seed: the generator's seed; the same seed writes the same bytes.
    difficulty: realistic (mild disease most common, overlapping classes, benign
    look-alikes, acquisition variation) or easy (florid lesions, one camera).
    label_noise: share of patients whose keywords are drawn afresh, whatever their
    photographs show (default: 0.07 when realistic, about 5% of eyes then disagree
    with their lesions; 0 when easy); each label keeps ODIR-5K's share, and every eye
    that disagrees is recorded.
    camera_shift: patients photographed by three cameras of different colour,
    vignetting and framing.
    """
    noise = label_noise if label_noise is not None else (0.07 if difficulty == "realistic" else 0.0)
    settings = Settings(patients, size, seed, difficulty, float(noise), camera_shift)
    path = Path(root)
    if needs_generation(path, settings):
        with progress_bar() as bar:
            task = bar.add_task(f"Drawing the phantom in {path}", total=patients, status="")
            generate(path, settings, progress=lambda done, _: bar.update(task, completed=done))
    return load_table(path)


@odirkit.hookimpl
def odirkit_register_datasets(register):
    register(
        "phantom",
        phantom,
        summary="Synthetic fundus photographs in the ODIR-5K layout, with lesion masks",
        test_params={"patients": 6, "size": 64, "difficulty": "easy"},
        creates_root=True,
    )
