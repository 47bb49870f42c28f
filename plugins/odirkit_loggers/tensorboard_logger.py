"""The ``tensorboard`` logger: scalars per epoch, hyperparameters, figures as images.

Writes TensorBoard event files into ``<variant>/tensorboard`` (or ``log_dir``):
every per-epoch metric as a scalar (``val_f1_micro`` at step = epoch), the
hyperparameters (the resolved configuration's numbers, strings and booleans)
with the final test scores, external validations (``external/<name>/...``), and the
run's figures (curves, explanation grid, GAN samples) as images. ``tensorboard
--logdir runs`` shows every run. A resumed run writes on into the same folder.
Needs ``pip install "odirkit[tensorboard]"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import odirkit
from odirkit.api import RunInfo, flatten

HEADLINE = ("f1_micro", "f1_macro", "recall_macro", "auc_macro")


class TensorBoardLogger:
    """Logs one odirkit run to one TensorBoard folder."""

    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir
        self.writer: Any = None
        self.hparams: dict[str, Any] = {}
        self.run_name = "run"

    def start(self, run: RunInfo) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.log_dir or str(Path(run.directory) / "tensorboard")
        self.writer = SummaryWriter(log_dir=folder)
        self.run_name = run.variant
        self.hparams = {
            k: v
            for k, v in flatten(run.config).items()
            if isinstance(v, bool | str | int | float) and v is not None
        }
        return {"log_dir": folder}

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            if math.isfinite(value):
                self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def log_final(self, final: Mapping[str, Any]) -> None:
        scores = final.get("final") or {}
        metrics = {
            f"test/{k}": float(scores[k])
            for k in HEADLINE
            if isinstance(scores.get(k), int | float) and math.isfinite(scores[k])
        }
        if metrics:
            self.writer.add_hparams(self.hparams, metrics, run_name="hparams")
        self.writer.flush()

    def log_external(self, name: str, result: Mapping[str, Any]) -> None:
        """An external validation's headline scores and their change from the internal test,
        as scalars ``external/<name>/<metric>`` and ``external/<name>/difference_<metric>``."""
        scores = result.get("final") or {}
        for metric in HEADLINE:
            value = scores.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"external/{name}/{metric}", value)
        for row in (result.get("comparison") or {}).get("metrics", []):
            if row["metric"] in HEADLINE and math.isfinite(row["difference"]):
                self.writer.add_scalar(
                    f"external/{name}/difference_{row['metric']}", row["difference"]
                )
        self.writer.flush()

    def log_files(self, paths: Sequence[Path]) -> None:
        from PIL import Image

        for path in paths:
            if Path(path).suffix.lower() != ".png":
                continue
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            tag = f"{Path(path).parent.name}/{Path(path).stem}"
            self.writer.add_image(tag, pixels, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def build_tensorboard(*, log_dir: str | None = None) -> TensorBoardLogger:
    """Write TensorBoard event files.

    log_dir: where (default: the variant folder's tensorboard/).
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise odirkit.PluginError(
            'the tensorboard logger needs TensorBoard: pip install "odirkit[tensorboard]"'
        ) from None
    return TensorBoardLogger(log_dir)


@odirkit.hookimpl
def odirkit_register_loggers(register):
    register(
        "tensorboard",
        build_tensorboard,
        summary="TensorBoard: scalars per epoch, hyperparameters, figures as images",
        test_params={},
    )
