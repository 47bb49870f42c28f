"""Is the phantom hard enough for a comparison on it to mean something?

On the quickstart's phantom (300 patients, 256 px), Normal vs Diabetes images:

- a colour-histogram logistic regression (216 bins, no spatial information,
  5-fold cross-validation by patient) and yellow / dark-red pixel-count rules:
  trivial cues, which should stay at or below ROC AUC 0.80;
- the generator's oracle (the area of the diabetic lesions it drew, against
  the labels, which carry the phantom's label noise): the ceiling;
- acquisition shortcuts: each eye's field share, brightness, JPEG quality, file
  size and camera, and the patient number, for each label of the patient (a
  cross-validated logistic regression, ``difficulty.acquisition_shortcuts``):
  none should reach ROC AUC 0.60 (labels with fewer than ten patients on a side
  are left out);
- the quickstart CNN (default variant, seed 0) scored per patient: micro F1
  should land between 0.65 and 0.92.

Then the same on ``difficulty = "easy"``, the first version's look, for contrast.
Prints one JSON object.

    python benchmarks/phantom_difficulty.py [--patients 300] [--size 256] [--no-cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

from odirkit_datasets.difficulty import acquisition_shortcuts, measure

from odirkit.plugins import get_registry

QUICKSTART = Path(__file__).parents[1] / "experiments" / "quickstart.toml"


def cnn_patient_f1(root: Path, difficulty: str, out: Path, patients: int, size: int) -> dict:
    """The quickstart's default variant, seed 0, scored per patient."""
    from typer.testing import CliRunner

    from odirkit.cli import app

    args = [
        "run",
        str(QUICKSTART),
        "--variant",
        "default",
        "--out",
        str(out),
        "--set",
        "seeds=[0]",
        "--set",
        "explain=[]",
        "--set",
        "data.level=patient",
        "--set",
        f"data.root={root.as_posix()}",
        "--set",
        f"data.difficulty={difficulty}",
        "--set",
        f"data.patients={patients}",
        "--set",
        f"data.size={size}",
    ]
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(result.output)
    (metrics,) = out.glob("quickstart/*/default-seed0/metrics.json")
    final = json.loads(metrics.read_text())["final"]
    return {
        "patient_micro_f1": round(final["f1_micro"], 4),
        "patient_micro_f1_interval": [round(v, 4) for v in final["intervals"]["f1_micro"]],
        "patient_auc": round(final["auc_macro"], 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-cnn", action="store_true", help="skip training the quickstart CNN")
    args = parser.parse_args()
    spec = get_registry().get("dataset", "phantom")
    report: dict = {"patients": args.patients, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        for difficulty in ("realistic", "easy"):
            root = Path(tmp) / difficulty
            spec.build(
                root=str(root),
                patients=args.patients,
                size=args.size,
                seed=0,
                difficulty=difficulty,
            )
            figures = {
                k: round(v, 4) if isinstance(v, float) else v for k, v in measure(root).items()
            }
            figures["acquisition_shortcut_auc"] = {
                label: round(auc, 4) for label, auc in acquisition_shortcuts(root).items()
            }
            if not args.no_cnn:
                figures["quickstart_cnn"] = cnn_patient_f1(
                    root, difficulty, Path(tmp) / f"runs-{difficulty}", args.patients, args.size
                )
            report[difficulty] = figures
    realistic = report["realistic"]
    report["checks"] = {
        "histogram_at_most_0.80": realistic["histogram_logistic_auc"] <= 0.80,
        "pixel_counts_at_most_0.80": max(
            realistic["yellow_count_auc"],
            realistic["red_count_auc"],
            realistic["yellow_plus_red_auc"],
        )
        <= 0.80,
        # None: no label has ten patients on each side (a small phantom)
        "acquisition_below_0.60": (
            max(shortcuts.values()) < 0.60
            if (shortcuts := realistic["acquisition_shortcut_auc"])
            else None
        ),
    }
    if not args.no_cnn:
        f1 = realistic["quickstart_cnn"]["patient_micro_f1"]
        report["checks"]["cnn_between_0.65_and_0.92"] = 0.65 <= f1 <= 0.92
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
