"""The shipped quickstart learns the images, and a shuffled-label control does not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

QUICKSTART = Path(__file__).parents[1] / "experiments" / "quickstart.toml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quickstart")


def final_metrics(out: Path) -> dict:
    (path,) = out.glob("quickstart/*/default/metrics.json")
    return json.loads(path.read_text())["final"]


@pytest.mark.slow
def test_quickstart_reaches_a_micro_f1_of_0_85(cli, workdir):
    result = cli("run", QUICKSTART, "--variant", "default", "--out", workdir / "runs", cwd=workdir)
    assert result.exit_code == 0, result.output
    final = final_metrics(workdir / "runs")
    assert final["f1_micro"] >= 0.85, final


@pytest.mark.slow
def test_gradcam_points_at_the_diabetic_lesions(workdir):
    # The quickstart explains its model after training (see its [[explain]] tables).
    (path,) = (workdir / "runs").glob("quickstart/*/default/explain/localisation.csv")
    table = pd.read_csv(path).set_index(["explainer", "label"])
    gradcam = table.loc[("gradcam", "D")]
    assert gradcam["images"] >= 10
    assert gradcam["pointing_game"] > 1.5 * gradcam["random_point"], gradcam
    assert gradcam["pointing_game"] > gradcam["random_point"] + 0.15, gradcam


@pytest.mark.slow
def test_shuffled_training_labels_stay_near_chance(cli, workdir):
    result = cli(
        "run",
        QUICKSTART,
        "--variant",
        "default",
        "--out",
        workdir / "control",
        "--set",
        "data.shuffle_train_labels=true",
        "--set",
        "explain=[]",
        cwd=workdir,
    )
    assert result.exit_code == 0, result.output
    final = final_metrics(workdir / "control")
    assert final["f1_macro"] < 0.65, final
    assert 0.3 < final["auc_macro"] < 0.7, final
