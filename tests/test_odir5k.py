"""ODIR-5K as published: layouts, keyword rules, patient labels, splits, scoring."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import OFFICIAL_COLUMNS, tiny_experiment
from PIL import Image

from odirkit.errors import DataError
from odirkit.labels import LABELS


def fundus(path: Path, colour=(180, 80, 40)) -> None:
    """A tiny stand-in photograph: a coloured disc on black."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:40, 0:50]
    image = np.zeros((40, 50, 3), np.uint8)
    image[(yy - 20) ** 2 + (xx - 25) ** 2 < 18**2] = colour
    Image.fromarray(image).save(path)


def patient(pid, left, right, labels, age=60, sex="Female"):
    row = {
        "ID": pid,
        "Patient Age": age,
        "Patient Sex": sex,
        "Left-Fundus": f"{pid}_left.jpg",
        "Right-Fundus": f"{pid}_right.jpg",
        "Left-Diagnostic Keywords": left,
        "Right-Diagnostic Keywords": right,
    }
    row.update({label: int(label in labels) for label in LABELS})
    return row


#: (left keywords, right keywords, workbook labels, expected left, expected right)
RULES = [
    ("normal fundus", "normal fundus", "N", "N", "N"),
    ("moderate non proliferative retinopathy，lens dust", "normal fundus", "D", "D", "N"),
    ("suspected glaucoma", "glaucoma", "G", "G", "G"),
    (
        "proliferative diabetic retinopathy，hypertensive retinopathy",
        "mild nonproliferative retinopathy",
        "DH",
        "DH",
        "D",
    ),
    ("cataract", "low image quality，normal fundus", "C", "C", "N"),
    ("dry age-related macular degeneration", "wet age-related macular degeneration", "A", "A", "A"),
    ("pathological myopia", "myopic maculopathy", "M", "M", "M"),
    ("epiretinal membrane", "optic disk photographically invisible", "O", "O", "N"),
    ("lens dust", "image offset", "N", "N", "N"),
    ("anterior segment image", "normal fundus", "N", None, "N"),
    ("no fundus image", "severe nonproliferative retinopathy", "D", None, "D"),
    ("laser spot，vitreous degeneration", "normal fundus", "O", "O", "N"),
    ("normal fundus", "normal fundus", "D", "N", "N"),  # workbook disagrees with keywords
    # "normal fundus" beside a disease keyword, before or after it: the disease wins, N is 0
    (
        "normal fundus，mild nonproliferative retinopathy",
        "pathological myopia，normal fundus",
        "DM",
        "D",
        "M",
    ),
]


def write_rules_dataset(root: Path, layout: str = "official") -> Path:
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    frame = pd.DataFrame(rows, columns=OFFICIAL_COLUMNS)
    if layout == "official":
        frame.to_excel(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", index=False)
        folder = root / "ODIR-5K_Training_Dataset"
    elif layout == "mirror":
        (root / "ODIR-5K").mkdir(parents=True)
        frame.to_excel(root / "ODIR-5K" / "data.xlsx", index=False)
        folder = root / "ODIR-5K" / "Training Images"
    else:  # anywhere: a CSV in one folder, the images in another
        (root / "meta").mkdir(parents=True)
        frame.to_csv(root / "meta" / "my_annotations.csv", index=False)
        folder = root / "photos" / "all"
    for row in rows:
        fundus(folder / row["Left-Fundus"])
        fundus(folder / row["Right-Fundus"])
    return root


@pytest.fixture
def odir5k(registry):
    spec = registry.get("dataset", "odir5k")
    return lambda root, **kw: spec.build(root=str(root), **kw)


@pytest.mark.parametrize("layout", ["official", "mirror", "anywhere"])
def test_every_keyword_rule_on_each_layout(odir5k, tmp_path, layout, capsys):
    table = odir5k(write_rules_dataset(tmp_path, layout))
    by_eye = table.set_index(["patient_id", "eye"])
    for i, (_, _, _, left, right) in enumerate(RULES):
        for eye, expected in (("left", left), ("right", right)):
            key = (str(i), eye)
            if expected is None:
                assert key not in by_eye.index, f"patient {i} {eye} is not a fundus photograph"
                continue
            got = "".join(label for label in LABELS if by_eye.loc[key, label] == 1)
            assert got == expected, f"patient {i} {eye}: {got} != {expected}"
            assert (tmp_path / by_eye.loc[key, "path"]).exists()
    report = table.attrs["odirkit_report"]
    assert {(r["patient_id"], r["eye"]) for r in report["non_fundus_left_out"]} == {
        ("9", "left"),
        ("10", "left"),
    }
    assert [d["patient_id"] for d in report["keyword_workbook_disagreements"]] == ["12"]
    assert "epiretinal membrane" in report["other_keywords"]
    err = capsys.readouterr().err
    assert "not fundus photographs" in err and "disagree" in err


def test_patient_is_normal_only_when_neither_eye_is_diseased(odir5k, tmp_path):
    table = odir5k(write_rules_dataset(tmp_path))
    patients = table.groupby("patient_id")[[f"patient_{label}" for label in LABELS]].max()
    assert patients.loc["1", "patient_N"] == 0 and patients.loc["1", "patient_D"] == 1
    assert patients.loc["0", "patient_N"] == 1
    # eyes that say "normal fundus" beside a disease: the patient has the diseases, not N
    assert patients.loc["13"].filter(like="patient_").to_dict() == {
        f"patient_{label}": int(label in "DM") for label in LABELS
    }
    assert patients.loc["3"].filter(like="patient_").to_dict() == {
        f"patient_{label}": int(label in "DH") for label in LABELS
    }


def test_the_phantom_reads_back_through_the_odir5k_loader(odir5k, phantom_root):
    table = odir5k(phantom_root)
    own = pd.read_csv(phantom_root / "phantom_images.csv", keep_default_na=False)
    merged = table.merge(
        own.astype({"patient_id": str}), on=["patient_id", "eye"], suffixes=("", "_phantom")
    )
    assert len(merged) == len(own) == len(table)
    for label in LABELS:
        assert (merged[label] == merged[f"{label}_phantom"]).all(), label
    assert table.attrs["odirkit_report"]["keyword_workbook_disagreements"] == []


def test_full_df_csv_with_preprocessed_images(odir5k, tmp_path):
    rows = []
    for i, (left, right, labels, _, _) in enumerate(RULES[:4]):
        record = patient(i, left, right, labels)
        for eye in ("left", "right"):
            name = record[f"{eye.capitalize()}-Fundus"]
            rows.append(
                {
                    **record,
                    "filepath": f"../input/preprocessed_images/{name}",
                    "labels": "['N']",
                    "target": "[1, 0, 0, 0, 0, 0, 0, 0]",
                    "filename": name,
                }
            )
            fundus(tmp_path / "preprocessed_images" / name)
            fundus(tmp_path / "ODIR-5K" / "Training Images" / name, colour=(10, 200, 10))
    pd.DataFrame(rows).to_csv(tmp_path / "full_df.csv", index=False)
    table = odir5k(tmp_path)
    assert len(table) == 8
    assert table["path"].str.startswith("preprocessed_images/").all()  # its own folder wins
    row = table[(table["patient_id"] == "3") & (table["eye"] == "left")].iloc[0]
    assert (row["D"], row["H"]) == (1, 1)


LONG_LABEL_NAMES = {  # the patient label columns as some copies of full_df.csv name them
    "N": "Normal ",
    "D": "Diabetes",
    "G": "Glaucoma",
    "C": "Cataract",
    "A": "Age related Macular Degeneration ",
    "H": "Hypertension",
    "M": "Pathological Myopia",
    "O": "Other diseases/abnormalities",
}


def write_distribution(root: Path, kind: str, absent: tuple[str, ...] = ()) -> Path:
    """The RULES patients as one of the ODIR-5K distributions in circulation.

    official / mirror: one row per patient (workbook); full_df_19: one row per image
    with ``filename`` (and filepath, labels, target); full_df_15: one row per image,
    no ``filename``, long label names. Photographs named in ``absent`` are left out of
    the image folder, as the 512-pixel re-release left some out.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    if kind in ("official", "mirror"):
        write_rules_dataset(root, kind)
        folder = root / (
            "ODIR-5K_Training_Dataset" if kind == "official" else "ODIR-5K/Training Images"
        )
        for name in absent:
            (folder / name).unlink()
        return root
    per_image = []
    for record in rows:
        for eye in ("left", "right"):
            name = record[f"{eye.capitalize()}-Fundus"]
            if name in absent and kind == "full_df_19":
                continue  # the 19-column file lists the photographs the release kept
            row = dict(record)
            if kind == "full_df_19":
                row.update(
                    filepath=f"../input/preprocessed_images/{name}",
                    labels="['N']",
                    target="[1, 0, 0, 0, 0, 0, 0, 0]",
                    filename=name,
                )
            per_image.append(row)
            if name not in absent:
                fundus(root / "preprocessed_images" / name)
    frame = pd.DataFrame(per_image)
    if kind == "full_df_15":
        frame = frame.rename(columns=LONG_LABEL_NAMES)
    frame.to_csv(root / "full_df.csv", index=False)
    return root


def per_eye(table: pd.DataFrame) -> pd.DataFrame:
    columns = ["patient_id", "eye", *LABELS, *(f"patient_{label}" for label in LABELS)]
    return table[columns].sort_values(["patient_id", "eye"]).reset_index(drop=True)


DISTRIBUTIONS = ["official", "mirror", "full_df_19", "full_df_15"]


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
def test_every_distribution_reads_to_the_same_per_eye_table_each_photograph_once(
    odir5k, tmp_path, kind, capsys
):
    reference = per_eye(odir5k(write_distribution(tmp_path / "official", "official")))
    table = odir5k(write_distribution(tmp_path / kind, kind))
    assert not table.duplicated(["patient_id", "eye"]).any()
    assert not table["path"].duplicated().any()
    pd.testing.assert_frame_equal(per_eye(table), reference)
    report = table.attrs["odirkit_report"]
    assert report["patients"] == len(RULES)
    if kind.startswith("full_df"):
        assert report["repeated_rows_merged"] == len(RULES)  # one repeat per patient
        assert "repeated row(s) merged" in capsys.readouterr().err
    if kind == "full_df_15":  # the long names are the patient labels (patient 12: "D")
        assert report["patient_label_columns"]["D"] == "Diabetes"
        assert table.loc[table["patient_id"] == "12", "patient_D"].eq(1).all()


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
def test_named_photographs_that_are_absent_are_left_out_when_the_table_is_read(
    odir5k, tmp_path, kind, capsys
):
    absent = ("2_left.jpg", "5_right.jpg")
    table = odir5k(write_distribution(tmp_path, kind, absent))
    present = set(zip(table["patient_id"], table["eye"], strict=True))
    assert ("2", "left") not in present and ("5", "right") not in present
    assert ("2", "right") in present and ("5", "left") in present
    report = table.attrs["odirkit_report"]
    expected = [] if kind == "full_df_19" else ["2_left.jpg", "5_right.jpg"]
    assert [r["filename"] for r in report["images_not_found"]] == expected
    err = capsys.readouterr().err
    assert err.count("are not under") == (1 if expected else 0)


@pytest.mark.slow
def test_a_release_with_absent_photographs_runs_and_counts_each_test_photograph_once(
    cli, tmp_path, phantom_root
):
    """The 512-pixel re-release: full_df.csv with 15 columns, photographs left out."""
    root = tmp_path / "release"
    book = pd.read_excel(phantom_root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    rows = []
    for record in book.to_dict("records"):
        for eye in ("Left", "Right"):
            rows.append(record)
            name = record[f"{eye}-Fundus"]
            if name not in ("3_left.jpg", "17_right.jpg"):
                target = root / "preprocessed_images" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(phantom_root / "ODIR-5K_Training_Dataset" / name, target)
    pd.DataFrame(rows).rename(columns=LONG_LABEL_NAMES).to_csv(root / "full_df.csv", index=False)
    text = tiny_experiment(root, epochs=1).replace('dataset = "phantom"', 'dataset = "odir5k"')
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("patients =", "size =", "diff"))
    )
    (tmp_path / "exp.toml").write_text(text)
    result = cli("run", tmp_path / "exp.toml", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "could not be read" not in result.stderr
    # read twice (checked before the run folder exists, then loaded): said once
    assert result.stderr.count("are not under") == 1
    assert result.stderr.count("repeated row(s) merged") == 1
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    data = json.loads((variant / "data.json").read_text())
    assert [r["filename"] for r in data["dataset"]["images_not_found"]] == [
        "3_left.jpg",
        "17_right.jpg",
    ]
    predictions = pd.read_csv(variant / "predictions.csv", dtype={"patient_id": str})
    assert not predictions.duplicated(["patient_id", "eye"]).any()
    assert len(predictions) == data["test_images"]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_two_rows_of_one_patient_that_disagree_stop_naming_the_id_and_both_rows(
    odir5k, tmp_path, suffix
):
    write_rules_dataset(tmp_path)
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    second = dict(rows[1], **{"Left-Diagnostic Keywords": "normal fundus", "D": 0, "N": 1})
    frame = pd.DataFrame([*rows, second], columns=OFFICIAL_COLUMNS)
    path = tmp_path / f"book{suffix}"
    frame.to_excel(path, index=False) if suffix == ".xlsx" else frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        odir5k(tmp_path, annotations=path.name)
    message = str(info.value)
    assert f"book{suffix}: patient ID 1 appears in rows 3 and {len(rows) + 2}" in message
    assert "Left-Diagnostic Keywords" in message and "proliferative" in message


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_blank_label_cells_are_one_clear_error_for_workbooks_and_csv_alike(
    odir5k, tmp_path, suffix
):
    write_rules_dataset(tmp_path)
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    frame = pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).astype({"D": object, "O": object})
    frame.loc[3, "D"] = None
    frame.loc[7, "O"] = ""
    path = tmp_path / f"book{suffix}"
    frame.to_excel(path, index=False) if suffix == ".xlsx" else frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        odir5k(tmp_path, annotations=path.name)
    message = str(info.value)
    assert message.startswith(f"{path}: blank patient label cell(s) in column(s) D, O")
    assert "patient ID(s) 3, 7" in message


def test_missing_data_says_where_it_looked_and_how_to_use_the_phantom(odir5k, tmp_path):
    with pytest.raises(DataError) as info:
        odir5k(tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "odir2019" in message
    assert "--set data.dataset=phantom" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no ODIR-5K annotations found"):
        odir5k(tmp_path / "empty")


def test_workbook_with_missing_columns_is_named(odir5k, tmp_path):
    pd.DataFrame({"ID": [1], "Patient Age": [3]}).to_excel(tmp_path / "x.xlsx", index=False)
    with pytest.raises(DataError, match="missing column"):
        odir5k(tmp_path, annotations="x.xlsx")


def test_shipped_paper_experiment_fails_clearly_without_odir5k(cli, tmp_path):
    experiment = Path(__file__).parents[1] / "experiments" / "normal_vs_diabetes.toml"
    result = cli("run", experiment, "--out", tmp_path / "runs", cwd=tmp_path)
    assert result.exit_code == 2
    assert "data/odir5k" in result.stderr and "--set data.dataset=phantom" in result.stderr
    assert not (tmp_path / "runs").exists()
    ok = cli(
        "validate", experiment, "--set", "data.dataset=phantom", "--set", "data.root=data/phantom"
    )
    assert ok.exit_code == 0, ok.output


# -- splits ------------------------------------------------------------------------------


def test_k_folds_partition_the_patients_and_run_as_variants(registry, tmp_path, phantom_root):
    from odirkit.config import load_experiment
    from odirkit.data.prepare import assign_split, load_samples

    path = tmp_path / "exp.toml"
    path.write_text(tiny_experiment(phantom_root).replace("test_fraction = 0.25", "folds = 3"))
    experiments = load_experiment(path, registry)
    assert [e.variant for e in experiments] == ["default-fold0", "default-fold1", "default-fold2"]
    table = load_samples(experiments[0]).table
    tests = [set(assign_split(e, table).pipe(lambda s: s[s == "test"]).index) for e in experiments]
    assert not tests[0] & tests[1] and not tests[1] & tests[2] and not tests[0] & tests[2]
    assert set().union(*tests) == set(table["patient_id"])


def test_split_file_is_written_then_reused(registry, tmp_path, phantom_root):
    from odirkit.config import load_experiment
    from odirkit.data.prepare import assign_split, load_samples

    split_file = tmp_path / "splits" / "seed0.csv"
    path = tmp_path / "exp.toml"
    path.write_text(
        tiny_experiment(phantom_root).replace(
            "test_fraction = 0.25", f'test_fraction = 0.25\nsplit_file = "{split_file}"'
        )
    )
    (exp,) = load_experiment(path, registry)
    table = load_samples(exp).table
    first = assign_split(exp, table)
    assert split_file.exists()
    saved = pd.read_csv(split_file, dtype={"patient_id": str})
    assert set(saved["split"]) == {"train", "val", "test"}
    (other_seed,) = load_experiment(path, registry, overrides=["seed=9"])
    assert assign_split(other_seed, table).sort_index().equals(first.sort_index())
    saved.iloc[1:].to_csv(split_file, index=False)  # a patient goes missing
    with pytest.raises(DataError, match="does not place 1 patient"):
        assign_split(exp, table)


# -- patient level, predict and score ----------------------------------------------------


@pytest.mark.slow
def test_patient_level_fuses_diseases_by_max_and_normal_by_min(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).replace(
        'labels = ["N", "D"]',
        'labels = ["N", "D", "G", "C", "A", "H", "M", "O"]\nlevel = "patient"',
    )
    text = text.replace('dataset = "phantom"', 'dataset = "odir5k"')
    text = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("patients =", "size =", "difficulty ="))
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    images = pd.read_csv(variant / "predictions.csv", dtype={"patient_id": str})
    patients = pd.read_csv(variant / "patient_predictions.csv", dtype={"ID": str})
    grouped = images.groupby("patient_id")
    expected = grouped[[f"prob_{label}" for label in LABELS]].max()
    expected["prob_N"] = grouped["prob_N"].min()  # a patient is as normal as the least normal eye
    got = patients.set_index("ID")[list(LABELS)]
    assert np.allclose(got.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-5)
    final = json.loads((variant / "metrics.json").read_text())
    assert final["level"] == "patient" and set(final["final"]["odir_patient"]) == {
        "kappa",
        "f1",
        "auc",
        "final",
    }
    assert "val_odir_patient_final" in pd.read_csv(variant / "metrics.csv").columns

    submission = tmp_path / "submission.csv"
    predicted = cli(
        "predict", variant, phantom_root / "ODIR-5K_Training_Dataset", "--out", submission
    )
    assert predicted.exit_code == 0, predicted.output
    frame = pd.read_csv(submission, dtype={"ID": str})
    assert list(frame.columns) == ["ID", *LABELS] and len(frame) == 40
    # predict fuses exactly as the evaluation does
    same = frame.set_index("ID").loc[got.index]
    assert np.allclose(same.to_numpy(), got.to_numpy(), atol=2e-6)
    workbook = phantom_root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
    scored = cli("score", workbook, submission, "--json")
    assert scored.exit_code == 0, scored.output
    assert set(json.loads(scored.stdout)["odir"]) == {"kappa", "f1", "auc", "final"}


def test_score_matches_the_challenge_formula(cli, tmp_path):
    from sklearn import metrics

    rng = np.random.default_rng(0)
    ids = np.arange(200)
    truth = pd.DataFrame(rng.integers(0, 2, (200, 8)), columns=list(LABELS)).assign(ID=ids)
    preds = pd.DataFrame(rng.random((200, 8)), columns=list(LABELS)).assign(ID=ids)
    truth[["ID", *LABELS]].to_csv(tmp_path / "truth.csv", index=False)
    preds[["ID", *LABELS]].to_csv(tmp_path / "preds.csv", index=False)
    result = cli("score", tmp_path / "truth.csv", tmp_path / "preds.csv", "--json")
    assert result.exit_code == 0, result.output
    odir = json.loads(result.stdout)["odir"]
    gt = truth[list(LABELS)].to_numpy().flatten()
    pr = pd.read_csv(tmp_path / "preds.csv")[list(LABELS)].to_numpy().flatten()
    kappa = metrics.cohen_kappa_score(gt, pr > 0.5)
    f1 = metrics.f1_score(gt, pr > 0.5, average="micro")
    auc = metrics.roc_auc_score(gt, pr)
    assert odir["kappa"] == pytest.approx(kappa, abs=1e-9)
    assert odir["f1"] == pytest.approx(f1, abs=1e-9)
    assert odir["auc"] == pytest.approx(auc, abs=1e-9)
    assert odir["final"] == pytest.approx((kappa + f1 + auc) / 3, abs=1e-9)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p.iloc[:-2], "2 patient(s) of the ground truth have no prediction"),
        (lambda p: pd.concat([p, p.iloc[[0]].assign(ID=999)]), "not in the ground truth"),
        (lambda p: p.iloc[::-1], "not in the order"),
        (lambda p: p.drop(columns=["ID"]), "the predictions file lacks column(s) ID"),
        (lambda p: p.drop(columns=list(LABELS)), "the predictions file has no label column"),
        (lambda p: p.assign(D="x"), "column D must hold numbers"),
        (lambda p: pd.concat([p, p.iloc[[0]]]), "repeated"),
    ],
)
def test_score_rejects_bad_submissions_clearly(cli, tmp_path, change, expected):
    ids = np.arange(10)
    truth = pd.DataFrame(np.eye(8, dtype=int)[ids % 8], columns=list(LABELS)).assign(ID=ids)
    preds = truth.astype(float)
    truth[["ID", *LABELS]].to_csv(tmp_path / "truth.csv", index=False)
    change(preds[["ID", *LABELS]]).to_csv(tmp_path / "preds.csv", index=False)
    result = cli("score", tmp_path / "truth.csv", tmp_path / "preds.csv")
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output


def test_score_sort_matches_patients_by_id(cli, tmp_path):
    # neither file is in ID order, and each in a different one: sorting only one of them,
    # or each by a different key, pairs a patient with another's labels
    ids = np.array([21, 3, 100, 1, 10, 2, 30, 4])
    truth = pd.DataFrame(np.eye(8, dtype=int), columns=list(LABELS)).assign(ID=ids)
    truth[["ID", *LABELS]].to_csv(tmp_path / "truth.csv", index=False)
    truth[["ID", *LABELS]].iloc[[5, 0, 7, 2, 4, 1, 6, 3]].to_csv(
        tmp_path / "preds.csv", index=False
    )
    result = cli("score", tmp_path / "truth.csv", tmp_path / "preds.csv", "--sort", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["odir"]["final"] == pytest.approx(1.0)


# -- the cache -----------------------------------------------------------------------------


def test_two_processes_share_one_cache(tmp_path, phantom_root):
    import subprocess
    import sys

    images = sorted(str(p) for p in (phantom_root / "ODIR-5K_Training_Dataset").glob("*.jpg"))
    code = (
        "import sys\n"
        "from odirkit.data.images import ImageCache, Preprocessing, prepare_images\n"
        "cache = ImageCache(sys.argv[1], Preprocessing(size=40))\n"
        "with cache.building():\n"
        "    result = prepare_images(sys.argv[2:], cache)\n"
        "assert not result.failures\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache"), *images])
        for _ in range(2)
    ]
    assert [p.wait() for p in procs] == [0, 0]
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == len(images)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_circle_crop_blacks_out_the_corners(tmp_path):
    from odirkit.data.images import Preprocessing, preprocess

    path = tmp_path / "bright.png"
    Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).save(path)
    image = preprocess(path, Preprocessing(size=32, crop_to_fov=False, circle_crop=True))
    assert image[0, 0].sum() == 0 and image[16, 16].sum() > 0
    shutil.rmtree(tmp_path)


def test_cross_validation_reports_the_mean_over_folds(cli, tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(
        tiny_experiment(phantom_root, epochs=1).replace("test_fraction = 0.25", "folds = 2")
    )
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").glob("*/*")
    table = pd.read_csv(run / "comparison.csv")
    assert list(table["run"]) == ["default-fold0", "default-fold1", "default (mean of 2 folds)"]
    assert table.iloc[2]["f1_micro_std"] == pytest.approx(table["f1_micro"].iloc[:2].std())
    mean = table.iloc[2]
    assert mean["f1_micro"] == pytest.approx(table["f1_micro"].iloc[:2].mean())
    split0 = pd.read_csv(run / "default-fold0" / "split.csv")
    split1 = pd.read_csv(run / "default-fold1" / "split.csv")
    test0 = set(split0.loc[split0["split"] == "test", "patient_id"])
    test1 = set(split1.loc[split1["split"] == "test", "patient_id"])
    assert test0 and test1 and not test0 & test1


def _rows_of_rules() -> list[dict]:
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    return rows


def test_odd_but_real_cells_read_as_one_patient_each(odir5k, tmp_path):
    write_rules_dataset(tmp_path)
    rows = _rows_of_rules()
    frame = pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).astype({"ID": object})
    frame.loc[1, "ID"] = "1.0"  # a spreadsheet's float
    repeat = dict(rows[2], **{"Left-Diagnostic Keywords": "  Suspected   GLAUCOMA ", "ID": "2"})
    frame = pd.concat([frame, pd.DataFrame([repeat])], ignore_index=True)
    frame.to_csv(tmp_path / "book.csv", index=False)
    table = odir5k(tmp_path, annotations="book.csv")
    assert sorted(set(table["patient_id"]), key=int) == [str(i) for i in range(len(RULES))]
    assert table.attrs["odirkit_report"]["repeated_rows_merged"] == 1  # spaces and case only


def test_rows_of_one_patient_differing_only_in_a_label_column_conflict(odir5k, tmp_path):
    write_rules_dataset(tmp_path)
    rows = _rows_of_rules()
    frame = pd.DataFrame([*rows, dict(rows[4], C=0, O=1)], columns=OFFICIAL_COLUMNS)
    frame.to_csv(tmp_path / "book.csv", index=False)
    last = len(rows) + 2  # spreadsheet rows: the header is row 1
    with pytest.raises(DataError, match=rf"patient ID 4 appears in rows 6 and {last} .*C: 1"):
        odir5k(tmp_path, annotations="book.csv")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: f.assign(ID=f["ID"].astype(object).where(f.index != 3, "")), "row 5 has no"),
        (
            lambda f: f.assign(
                **{"Right-Fundus": f["Right-Fundus"].where(f.index != 5, "1_right.jpg")}
            ),
            "1_right.jpg is named for patient 1 (right eye) and for patient 5 (right eye)",
        ),
    ],
    ids=["blank_id", "one_photograph_two_patients"],
)
def test_a_table_that_loses_or_doubles_a_photograph_is_refused(odir5k, tmp_path, damage, expected):
    write_rules_dataset(tmp_path)
    damage(pd.DataFrame(_rows_of_rules(), columns=OFFICIAL_COLUMNS)).to_csv(
        tmp_path / "book.csv", index=False
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        odir5k(tmp_path, annotations="book.csv")


def test_eyes_without_a_file_name_or_keywords_are_left_out_and_listed(odir5k, tmp_path, capsys):
    write_rules_dataset(tmp_path)
    frame = pd.DataFrame(_rows_of_rules(), columns=OFFICIAL_COLUMNS)
    frame.loc[2, "Left-Fundus"] = ""
    frame.loc[4, "Right-Diagnostic Keywords"] = ""
    frame.to_csv(tmp_path / "book.csv", index=False)
    table = odir5k(tmp_path, annotations="book.csv")
    eyes = set(zip(table["patient_id"], table["eye"], strict=True))
    assert ("2", "left") not in eyes and ("4", "right") not in eyes and ("4", "left") in eyes
    report = table.attrs["odirkit_report"]
    assert report["eyes_without_a_file_name"] == [{"patient_id": "2", "eye": "left"}]
    assert [r["filename"] for r in report["images_without_keywords"]] == ["4_right.jpg"]
    err = capsys.readouterr().err
    assert "names no photograph for 1 eye(s)" in err and "blank diagnostic keywords" in err


def test_a_linked_image_folder_is_read_and_the_releases_own_folder_is_the_only_one(
    odir5k, tmp_path
):
    source = write_distribution(tmp_path / "source", "full_df_15", absent=("3_left.jpg",))
    root = tmp_path / "linked"
    root.mkdir()
    shutil.copy(source / "full_df.csv", root / "full_df.csv")
    (root / "preprocessed_images").symlink_to(source / "preprocessed_images")
    linked = odir5k(root)
    assert len(linked) == len(odir5k(source)) and ("3", "left") not in set(
        zip(linked["patient_id"], linked["eye"], strict=True)
    )
    # the full archive also ships the full-size originals: an absent crop is not taken
    # from them (the re-release left it out)
    fundus(source / "ODIR-5K" / "ODIR-5K" / "Training Images" / "3_left.jpg")
    table = odir5k(source)
    assert ("3", "left") not in set(zip(table["patient_id"], table["eye"], strict=True))
    assert [r["filename"] for r in table.attrs["odirkit_report"]["images_not_found"]] == [
        "3_left.jpg"
    ]


@pytest.mark.parametrize(("layout", "images"), [("official", "."), ("mirror", "ODIR-5K")])
def test_a_photograph_named_in_two_folders_is_read_from_the_layouts_image_folder(
    odir5k, tmp_path, layout, images
):
    # data.images names a folder above the layout's own, which holds the mirror's Testing
    # Images and a user's copy (a folder that sorts first) with photographs of the same names
    write_rules_dataset(tmp_path, layout)
    folder = "ODIR-5K_Training_Dataset" if layout == "official" else "ODIR-5K/Training Images"
    for path in sorted((tmp_path / folder).iterdir()):
        for other in ("ODIR-5K/Testing Images", "ODIR-5K/AAA copy"):
            fundus(tmp_path / other / path.name, colour=(10, 200, 10))
    table = odir5k(tmp_path, images=images)
    assert table["path"].str.startswith(folder + "/").all()


# -- where the annotations are found, when no known layout names them ------------------------


def annotations(path: Path, official: bool = True) -> Path:
    """An annotation file at ``path`` (.csv or .xlsx), with the official columns or not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([patient(0, "normal fundus", "normal fundus", "N")])
    if not official:
        frame = frame.drop(columns=["Left-Diagnostic Keywords"])
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_excel(path, index=False)
    return path


def test_a_workbook_anywhere_comes_first_then_the_shallowest_file_then_by_name(tmp_path):
    from odirkit_datasets.odir5k import find_annotations

    annotations(tmp_path / "a" / "b" / "deep.csv")
    annotations(tmp_path / "a" / "wrong.csv", official=False)  # not ODIR-5K's columns
    (tmp_path / "a" / "broken.xlsx").write_bytes(b"not a workbook")  # unreadable: passed over
    (tmp_path / "a" / "notes.txt").write_text("ID,Patient Age")
    assert find_annotations(tmp_path) == (tmp_path / "a" / "b" / "deep.csv", ())
    annotations(tmp_path / "z" / "y" / "x" / "Data.XLSX")  # a workbook, however deep
    assert find_annotations(tmp_path)[0] == tmp_path / "z" / "y" / "x" / "Data.XLSX"
    annotations(tmp_path / "b" / "data.xlsx")
    assert find_annotations(tmp_path)[0] == tmp_path / "b" / "data.xlsx"  # the shallower
    annotations(tmp_path / "a" / "q" / "data.xlsx")  # sorts first by name, but is deeper
    assert find_annotations(tmp_path)[0] == tmp_path / "b" / "data.xlsx"
    annotations(tmp_path / "a" / "data.xlsx")
    assert find_annotations(tmp_path)[0] == tmp_path / "a" / "data.xlsx"  # then by name


def test_no_annotations_names_every_layout_looked_for_and_the_columns(tmp_path):
    from odirkit_datasets.odir5k import KNOWN_LAYOUTS, OFFICIAL_COLUMNS, find_annotations

    annotations(tmp_path / "wrong.csv", official=False)
    with pytest.raises(DataError) as error:
        find_annotations(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: no ODIR-5K annotations found (looked for ")
    assert ", ".join(name for name, _ in KNOWN_LAYOUTS) in message
    assert f"the columns {', '.join(OFFICIAL_COLUMNS)})" in message


def test_files_are_walked_once_through_linked_folders_and_not_in_odirkits_own(tmp_path):
    from odirkit_datasets.odir5k import _walk

    annotations(tmp_path / "data" / "a.csv")
    (tmp_path / "data" / "up").symlink_to(tmp_path)  # a link back up the tree
    annotations(tmp_path / ".odirkit-verdicts" / "b.csv")  # odirkit's own folders
    annotations(tmp_path / ".odirkit-cache" / "c.csv")
    elsewhere = annotations(tmp_path.parent / f"{tmp_path.name}-linked" / "d.csv")
    (tmp_path / "linked").symlink_to(elsewhere.parent)  # a dataset linked into place
    found = [p.relative_to(tmp_path).as_posix() for p in _walk(tmp_path)]
    assert found == ["data/a.csv", "linked/d.csv"]


def test_blank_label_cells_name_the_patients_numbers_first_in_numeric_order(tmp_path):
    rows = [patient(pid, "normal fundus", "normal fundus", "N") for pid in ("10", "b", "9", "a")]
    frame = pd.DataFrame(rows, columns=OFFICIAL_COLUMNS)
    frame["N"] = frame["N"].astype(object)
    frame.loc[:, "N"] = None
    frame.to_excel(tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", index=False)
    from odirkit_datasets.odir5k import read_odir

    with pytest.raises(DataError, match=r"for patient ID\(s\) 9, 10, a, b: fill them"):
        read_odir(tmp_path, tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", (), None)


# -- the annotation table's cells and the refusals that name them ---------------------------


def workbook(root: Path, rows: list[dict]) -> Path:
    path = root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
    pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).to_excel(path, index=False)
    return path


def read(root: Path, path: Path):
    from odirkit_datasets.odir5k import read_odir

    return read_odir(root, path, (), None)


@pytest.mark.parametrize(("value", "shown"), [(2, "2"), (0.5, "0.5"), ("yes", "'yes'")])
def test_a_label_cell_other_than_0_or_1_is_refused_naming_patient_column_and_value(
    tmp_path, value, shown
):
    rows = [patient(i, "normal fundus", "normal fundus", "N") for i in range(3)]
    rows[1]["D"] = value
    path = workbook(tmp_path, rows)
    message = rf"{re.escape(str(path))}: patient ID 1: column D holds {shown}, expected 0 or 1$"
    with pytest.raises(DataError, match=message):
        read(tmp_path, path)


def test_blank_label_cells_of_more_than_ten_patients_show_ten_and_an_ellipsis(tmp_path):
    for count, ellipsis in ((10, False), (11, True)):
        rows = [patient(i, "normal fundus", "normal fundus", "N") for i in range(count)]
        for row in rows:
            row["N"] = None
        path = workbook(tmp_path, rows)
        with pytest.raises(DataError) as error:
            read(tmp_path, path)
        listed = "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
        assert f"for patient ID(s) {listed}{' ...' if ellipsis else ''}: fill them" in str(
            error.value
        )
        assert str(error.value).endswith(
            "(or remove the label columns N..O to take each patient's labels from the keywords)"
        )


def test_two_rows_of_one_patient_that_differ_are_refused_naming_four_columns_at_most(
    tmp_path,
):
    first = patient(7, "normal fundus", "normal fundus", "N", age=50)
    second = patient(7, "cataract", "glaucoma", "CG", age=51, sex="Male")
    path = workbook(tmp_path, [first, second])
    with pytest.raises(DataError) as error:
        read(tmp_path, path)
    message = str(error.value)
    assert "patient ID 7 appears in rows 2 and 3 with different values (" in message
    assert "Patient Age: 50 (row 2) vs 51 (row 3)" in message
    assert message.count(" vs ") == 4  # of the 7 columns that differ


def test_a_row_without_an_id_is_skipped_when_empty_and_refused_when_it_holds_data(tmp_path):
    rows = [patient(i, "normal fundus", "normal fundus", "N") for i in range(2)]
    for i in range(2):
        fundus(tmp_path / f"{i}_left.jpg")
        fundus(tmp_path / f"{i}_right.jpg")
    empty = dict.fromkeys(OFFICIAL_COLUMNS)
    path = workbook(tmp_path, [rows[0], empty, rows[1]])
    table = read(tmp_path, path)
    assert sorted(set(table["patient_id"])) == ["0", "1"]
    held = {**empty, "Patient Age": 40}
    path = workbook(tmp_path, [rows[0], held, rows[1]])
    with pytest.raises(DataError, match=r"row 3 has no patient ID but holds data"):
        read(tmp_path, path)


def test_an_unreadable_annotation_file_is_refused_naming_it(odir5k, tmp_path):
    (tmp_path / "mine.xlsx").write_bytes(b"PK not really a workbook")
    with pytest.raises(DataError, match=r"mine\.xlsx: cannot read the annotations \(.+\)$"):
        odir5k(tmp_path, annotations="mine.xlsx")


def test_cells_read_alike_from_a_workbook_and_from_text():
    from odirkit_datasets.odir5k import _cell, _patient_id

    assert [_cell(v) for v in (" 1 ", "1.0", 1.0, np.float64(0.0), np.int64(1))] == [1, 1, 1, 0, 1]
    assert [_cell(v) for v in ("0.5", 0.5, "  normal   fundus ", "", float("nan"), None)] == [
        0.5,
        0.5,
        "normal fundus",
        None,
        None,
        None,
    ]
    assert type(_cell(np.float64(2.0))) is int and type(_cell("2.5")) is float
    assert [_patient_id(v) for v in (88, "88", 88.0, "88.00", "0088", float("nan"), " ")] == [
        "88",
        "88",
        "88",
        "88",
        "0088",
        None,
        None,
    ]


def test_a_per_image_file_without_a_patients_left_photograph_still_gives_the_right_eye(
    odir5k, tmp_path
):
    # the 19-column full_df.csv lists only the photographs the re-release kept
    table = odir5k(write_distribution(tmp_path, "full_df_19", absent=("0_left.jpg",)))
    eyes = set(zip(table["patient_id"], table["eye"], strict=True))
    assert ("0", "right") in eyes and ("0", "left") not in eyes
    assert ("1", "left") in eyes and ("1", "right") in eyes


# -- what the reader reports beside the table ------------------------------------------------


def test_the_report_lists_each_eye_left_out_and_each_disagreement_in_the_labels_order(
    odir5k, tmp_path, capsys
):
    rows = [patient(i, left, right, labels) for i, (left, right, labels, _, _) in enumerate(RULES)]
    rows.append({**patient(20, "normal fundus", "normal fundus", "N"), "Left-Fundus": None})
    rows.append({**patient(25, "normal fundus", "normal fundus", "N"), "Right-Fundus": None})
    rows.append(patient(21, "normal fundus", "", "N"))  # a right eye without keywords
    rows.append(patient(22, "glaucoma", "cataract", "N"))  # keywords G and C, workbook N
    rows.append(patient(23, "normal fundus", "normal fundus", "GC"))  # the other way round
    rows.append(patient(24, "normal fundus", "normal fundus", "A"))
    pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).to_excel(
        tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", index=False
    )
    folder = tmp_path / "ODIR-5K_Training_Dataset"
    for row in rows:
        for side in ("Left", "Right"):
            if row[f"{side}-Fundus"] and row[f"{side}-Fundus"] != "0_right.jpg":
                fundus(folder / row[f"{side}-Fundus"])
    table = odir5k(tmp_path)
    report = table.attrs["odirkit_report"]
    assert report["per_image_file"] is False  # one row per patient
    assert report["annotations"] == str(tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    assert report["images_named"] == 2 * len(rows) - 2  # two eyes without a file name
    assert report["images"] == len(table)
    assert report["patients"] == len(rows) and report["rows"] == len(rows)
    assert report["images_not_found"] == [
        {"patient_id": "0", "eye": "right", "filename": "0_right.jpg"}
    ]
    assert report["eyes_without_a_file_name"] == [
        {"patient_id": "20", "eye": "left"},
        {"patient_id": "25", "eye": "right"},
    ]
    assert report["images_without_keywords"] == [
        {"patient_id": "21", "eye": "right", "filename": "21_right.jpg"}
    ]
    assert report["non_fundus_left_out"] == [
        {"patient_id": "9", "eye": "left", "keywords": "anterior segment image"},
        {"patient_id": "10", "eye": "left", "keywords": "no fundus image"},
    ]
    assert report["keyword_workbook_disagreements"] == [
        {"patient_id": "12", "keywords": "N", "workbook": "D"},
        {"patient_id": "22", "keywords": "GC", "workbook": "N"},  # N D G C A H M O order
        {"patient_id": "23", "keywords": "N", "workbook": "GC"},
        {"patient_id": "24", "keywords": "N", "workbook": "A"},
    ]
    err = capsys.readouterr().err
    assert (
        "disagree with the workbook's N..O columns: 12 (keywords N, workbook D), "
        "22 (keywords GC, workbook N), 23 (keywords N, workbook GC)" in " ".join(err.split())
    )  # three shown of four
    assert "24 (keywords" not in err
    assert "'no fundus image' are not fundus photographs and are left out\n" in err
    assert f"names are not under {folder} and are left out" in " ".join(err.split())
    # an eye without keywords or without a photograph counts as normal for its patient
    by_eye = table.set_index(["patient_id", "eye"])
    assert by_eye.loc[("21", "left"), "patient_N"] == 1
    assert by_eye.loc[("21", "left"), "patient_O"] == 0
    assert by_eye.loc[("20", "right"), "patient_N"] == 1
    assert by_eye.loc[("20", "right"), "patient_O"] == 0
    assert by_eye.loc[("25", "left"), "patient_O"] == 0
    assert by_eye.loc[("22", "left"), "keywords"] == "glaucoma"


def test_missing_columns_and_a_photograph_named_for_two_eyes_are_refused(odir5k, tmp_path):
    frame = pd.DataFrame([patient(0, "normal fundus", "normal fundus", "N")])
    frame.drop(columns=["Patient Sex", "Left-Fundus"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(
        DataError,
        match=r"a\.csv: missing column\(s\) Patient Sex, Left-Fundus; an ODIR-5K annotation file "
        r"has ID, Patient Age, Patient Sex, Left-Fundus, ",
    ):
        odir5k(tmp_path, annotations="a.csv")
    twice = patient(1, "normal fundus", "normal fundus", "N")
    twice["Right-Fundus"] = twice["Left-Fundus"]
    pd.DataFrame([twice]).to_csv(tmp_path / "b.csv", index=False)
    fundus(tmp_path / "1_left.jpg")
    with pytest.raises(
        DataError,
        match=r"1_left\.jpg is named for patient 1 \(left eye\) and for patient 1 \(right eye\); "
        r"one photograph cannot be two eyes \(it would sit on both sides of a split\)$",
    ):
        odir5k(tmp_path, annotations="b.csv")


def test_photographs_outside_the_dataset_folder_are_listed_by_their_absolute_path(odir5k, tmp_path):
    root = tmp_path / "root"
    rows = [patient(i, "normal fundus", "normal fundus", "N") for i in range(2)]
    root.mkdir()
    pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).to_csv(root / "mine.csv", index=False)
    for i in range(2):
        for eye in ("left", "right"):
            fundus(tmp_path / "photos" / f"{i}_{eye}.jpg")
    table = odir5k(root, annotations="mine.csv", images=str(tmp_path / "photos"))
    assert sorted(table["path"]) == sorted(
        str((tmp_path / "photos" / f"{i}_{eye}.jpg").resolve())
        for i in range(2)
        for eye in ("left", "right")
    )


@pytest.mark.parametrize("kind", ["full_df_19", "full_df_15"])
def test_a_file_with_a_row_per_image_is_reported_as_such(odir5k, tmp_path, kind):
    # the 15-column full_df.csv has no filename column: its repeated rows tell
    report = odir5k(write_distribution(tmp_path, kind)).attrs["odirkit_report"]
    assert report["per_image_file"] is True
    assert report["rows"] == 2 * report["patients"]  # a row for each eye


def test_without_label_columns_each_patients_labels_come_from_the_keywords(odir5k, tmp_path):
    rows = [patient(0, "moderate non proliferative retinopathy", "normal fundus", "N")]
    rows.append(patient(1, "normal fundus", "glaucoma", "N"))
    frame = pd.DataFrame(rows, columns=OFFICIAL_COLUMNS).drop(columns=list(LABELS))
    frame.to_csv(tmp_path / "mine.csv", index=False)
    for row in rows:
        fundus(tmp_path / row["Left-Fundus"])
        fundus(tmp_path / row["Right-Fundus"])
    table = odir5k(tmp_path, annotations="mine.csv").set_index(["patient_id", "eye"])
    assert table.loc[("0", "right"), ["patient_D", "patient_N"]].tolist() == [1, 0]
    assert table.loc[("1", "left"), ["patient_G", "patient_N"]].tolist() == [1, 0]


def test_a_missing_annotation_file_or_image_folder_is_refused_naming_it(odir5k, tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: annotation file not found$"):
        odir5k(tmp_path, annotations="nope.csv")
    write_rules_dataset(tmp_path)
    with pytest.raises(DataError, match=r"photos: image folder not found$"):
        odir5k(tmp_path, images="photos")
