"""The ``folder`` and ``table`` datasets, and the presets of the public collections.

Each preset in ``experiments/collections/`` is read from a miniature copy of its
collection, filed as the collection publishes it (``odirkit_datasets.miniature``); the
expected counts are recomputed here from the miniature's own files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from odirkit_datasets import miniature

from odirkit.config import load_experiment
from odirkit.data.prepare import assign_split, load_samples
from odirkit.errors import ConfigError, DataError

ROOT = Path(__file__).parents[1]
PRESETS = ROOT / "experiments" / "collections"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _samples(registry, preset: str, root: Path, *overrides: str):
    (exp,) = load_experiment(
        PRESETS / f"{preset}.toml", registry, overrides=[f"data.root={root}", *overrides]
    )
    return load_samples(exp)


def _dr_counts(grades: list[str]) -> dict[str, int]:
    """No DR (grade 0) and DR (grades 1-4) counted from the grades as written."""
    values = [int(g) for g in grades if g != ""]
    return {"N": sum(v == 0 for v in values), "D": sum(1 <= v <= 4 for v in values)}


# -- the presets, each on its collection in miniature -------------------------------------


def test_aptos2019_reads_id_codes_with_their_suffix_and_grades(registry, tmp_path):
    miniature.write_aptos(tmp_path, images=12)
    samples = _samples(registry, "aptos2019", tmp_path)
    rows = _rows(tmp_path / "train.csv")
    counts = samples.report["counts"]
    assert {k: counts[k] for k in "ND"} == _dr_counts([r["diagnosis"] for r in rows])
    by_path = dict(zip(samples.table["path"], samples.table["D"], strict=True))
    for row in rows:  # each image carries its own row's grade
        assert by_path[f"train_images/{row['id_code']}.png"] == int(int(row["diagnosis"]) > 0)
    assert samples.report["patient_ids"].startswith("none given")
    assert samples.table["patient_id"].nunique() == len(rows)


def test_eyepacs_takes_patient_and_eye_from_the_file_name(registry, tmp_path):
    miniature.write_eyepacs(tmp_path, patients=5)
    samples = _samples(registry, "eyepacs", tmp_path)
    table = samples.table
    rows = _rows(tmp_path / "trainLabels.csv")
    assert len(table) == len(rows) == 10
    assert sorted(set(table["patient_id"])) == ["10", "13", "16", "19", "22"]
    row = table[table["path"] == "train/13_right.jpeg"].iloc[0]
    assert (row["patient_id"], row["eye"]) == ("13", "right")
    grade = {r["image"]: int(r["level"]) for r in rows}["13_right"]
    assert row["D"] == int(grade > 0) and row["N"] == int(grade == 0)
    # both eyes of a patient stay on one side of the split
    sides = assign_split(load_experiment(PRESETS / "eyepacs.toml", registry)[0], table)
    assert len(sides) == 5


def test_messidor2_leaves_out_the_ungradable_images_on_purpose(registry, tmp_path):
    miniature.write_messidor2(tmp_path, images=10)
    samples = _samples(registry, "messidor2", tmp_path)
    rows = _rows(tmp_path / "messidor_data.csv")
    gradable = [r for r in rows if r["adjudicated_gradable"] == "1"]
    assert len(samples.table) == len(gradable) == 9
    assert samples.report["excluded"] == {"": 1}
    counts = samples.report["counts"]
    assert {k: counts[k] for k in "ND"} == _dr_counts([r["adjudicated_dr_grade"] for r in rows])
    assert set(samples.table["path"]) == {f"IMAGES/{r['image_id']}" for r in gradable}


def test_messidor2_without_exclude_names_the_blank_grade(registry, tmp_path):
    miniature.write_messidor2(tmp_path, images=6)
    with pytest.raises(DataError, match=r"adjudicated_dr_grade.*'' \(blank\) \(1 image\)"):
        _samples(registry, "messidor2", tmp_path, "data.exclude=[]")


def test_idrid_reads_its_headers_with_their_stray_spaces(registry, tmp_path):
    miniature.write_idrid(tmp_path, images=10)
    samples = _samples(registry, "idrid", tmp_path)
    labels_file = (
        tmp_path
        / "B. Disease Grading"
        / "2. Groundtruths"
        / "a. IDRiD_Disease Grading_Training Labels.csv"
    )
    rows = _rows(labels_file)
    counts = samples.report["counts"]
    assert {k: counts[k] for k in "ND"} == _dr_counts([r["Retinopathy grade"] for r in rows])
    assert samples.table["path"].iloc[0].endswith("a. Training Set/IDRiD_001.jpg")
    # "Risk of macular edema " (trailing space) is found by its name without the space
    (exp,) = load_experiment(
        PRESETS / "idrid.toml",
        registry,
        overrides=[
            f"data.root={tmp_path}",
            "data.label_column=Risk of macular edema",
            'data.mapping={ "0" = "N", "1" = "D" }',
        ],
    )
    with pytest.raises(DataError, match=r"'Risk of macular edema' holds.*'2' \("):  # DME 0-2
        load_samples(exp)


def test_rfmid_maps_condition_columns_and_sends_the_rest_to_other(registry, tmp_path):
    miniature.write_rfmid(tmp_path, images=12)
    samples = _samples(registry, "rfmid", tmp_path)
    table = samples.table.set_index("path")
    rows = {r["ID"]: r for r in _rows(tmp_path / "Training_Set" / "RFMiD_Training_Labels.csv")}
    for image_id, row in rows.items():
        labels = table.loc[f"Training_Set/Training/{image_id}.png"]
        conditions = [c for c in miniature.RFMID_CONDITIONS if row[c] == "1"]
        assert labels["D"] == int("DR" in conditions)
        assert labels["A"] == int("ARMD" in conditions)
        assert labels["M"] == int("MYA" in conditions)
        assert labels["G"] == int("ODC" in conditions)
        assert labels["O"] == int(any(c not in {"DR", "ARMD", "MYA", "ODC"} for c in conditions))
        assert labels["N"] == int(not conditions)
    assert samples.selection.task.kind == "multi_label"
    assert samples.report["graded_labels"] == ["N", "D", "G", "A", "M", "O"]


def test_rfmid_without_the_catch_all_lists_the_unmapped_conditions(registry, tmp_path):
    miniature.write_rfmid(tmp_path, images=12)
    mapping = 'data.mapping={ DR = "D", ODC = "G", ARMD = "A", MYA = "M" }'
    with pytest.raises(DataError) as caught:
        _samples(registry, "rfmid", tmp_path, mapping)
    message = str(caught.value)
    assert "RFMiD_Training_Labels.csv" in message
    for condition in ("TSLN", "MH", "CRVO"):
        assert f"'{condition}'" in message
    assert "'DR'" not in message.split("(mapped:")[0]
    # Disease_Risk is a 0/1 column too: without ignore_columns it is refused as a condition
    with pytest.raises(DataError, match="'Disease_Risk'"):
        _samples(registry, "rfmid", tmp_path, mapping, "data.ignore_columns=[]")


def test_rfmid_skipping_unmapped_conditions_leaves_out_images_with_nothing_else(registry, tmp_path):
    miniature.write_rfmid(tmp_path, images=12)
    mapping = 'data.mapping={ DR = "D", ODC = "G", ARMD = "A", MYA = "M" }'
    samples = _samples(registry, "rfmid", tmp_path, mapping, 'data.unmapped="skip"')
    kept = set(samples.table["path"])
    assert "Training_Set/Training/8.png" not in kept  # MH only
    assert "Training_Set/Training/7.png" in kept  # DR and TSLN: D
    assert samples.table.set_index("path").loc["Training_Set/Training/7.png", "O"] == 0


def test_hrf_takes_the_class_from_the_file_name(registry, tmp_path):
    miniature.write_hrf(tmp_path, per_class=3)
    samples = _samples(registry, "hrf", tmp_path)
    table = samples.table.set_index("path")
    assert table.loc["images/02_dr.JPG", "D"] == 1
    assert table.loc["images/02_g.jpg", "G"] == 1
    assert table.loc["images/02_h.jpg", "N"] == 1
    assert samples.report["classes"] == {"_dr": 3, "_g": 3, "_h": 3}
    assert table["patient_id"].nunique() == 9  # 02_h and 02_dr are different people


def test_retina_reads_a_folder_per_class(registry, tmp_path):
    miniature.write_retina(tmp_path, per_class=2)
    samples = _samples(registry, "retina", tmp_path)
    table = samples.table.set_index("path")
    assert table.loc["dataset/2_cataract/cataract_001.png", "C"] == 1
    assert table.loc["dataset/3_retina_disease/retina_000.png", "O"] == 1
    assert samples.report["counts"] == {
        **dict.fromkeys("NDGCAHMO", 0),
        "N": 2,
        "G": 2,
        "C": 2,
        "O": 2,
    }


# -- the folder plugin ---------------------------------------------------------------------


def _folder_experiment(root: Path, extra: str = "") -> str:
    return f"""
name = "folder"
device = "cpu"
[data]
dataset = "folder"
root = "{root.as_posix()}"
mapping = {{ "0_normal" = "N", "1_dr" = "D" }}
labels = ["N", "D"]
image_size = 32
{extra}
[model]
name = "cnn"
widths = [4, 4, 4, 4]
kernels = [3, 3, 3, 3]
dense = [8]
"""


def _load(tmp_path: Path, registry, text: str):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return load_experiment(path, registry)[0]


def test_train_val_test_folders_are_the_split(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    exp = _load(tmp_path, registry, _folder_experiment(root))
    table = load_samples(exp).table
    sides = assign_split(exp, table)
    for patient, path in zip(table["patient_id"], table["path"], strict=True):
        assert sides[patient] == path.split("/")[0]


def test_split_folders_are_found_whatever_their_case(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    for name in ("train", "val", "test"):
        (root / name).rename(root / name.capitalize())
    exp = _load(tmp_path, registry, _folder_experiment(root))
    table = load_samples(exp).table
    assert sorted(set(table["split"])) == ["test", "train", "val"]
    assert (table["split"] == table["path"].str.split("/").str[0].str.lower()).all()


def test_a_test_split_kept_alone_is_a_split_not_a_class(registry, tmp_path):
    # RETFound's test/ folder kept for external validation: test/<class>/*.jpg
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    import shutil

    shutil.rmtree(root / "train")
    shutil.rmtree(root / "val")
    exp = _load(tmp_path, registry, _folder_experiment(root))
    table = load_samples(exp).table
    assert set(table["split"]) == {"test"} and len(table) == 6
    assert table.set_index("path").loc["test/1_dr/test_0.jpg", "D"] == 1


def test_a_split_collection_without_val_gets_validation_drawn_from_train(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root, per_class=6)
    import shutil

    shutil.rmtree(root / "val")
    exp = _load(tmp_path, registry, _folder_experiment(root, "val_fraction = 0.3"))
    table = load_samples(exp).table
    sides = assign_split(exp, table)
    test = {p for p, f in zip(table["patient_id"], table["path"], strict=True) if f[:4] == "test"}
    assert set(sides[sides == "test"].index) == test
    assert (sides == "val").sum() >= 1 and set(sides[sides == "val"].index).isdisjoint(test)


def test_splits_false_pools_the_split_folders(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    exp = _load(tmp_path, registry, _folder_experiment(root, "splits = false"))
    table = load_samples(exp).table
    assert "split" not in table.columns and len(table) == 18


def test_folds_on_a_split_collection_are_refused(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    exp = _load(tmp_path, registry, _folder_experiment(root, "folds = 3\nfold = 0"))
    with pytest.raises(ConfigError, match="splits = false"):
        assign_split(exp, load_samples(exp).table)


def test_a_mac_s_hidden_files_and_macosx_folder_are_no_images(registry, tmp_path):
    # a collection zipped on a Mac: ._name.png resource forks beside each image (not images,
    # Pillow cannot read them) and a __MACOSX/ folder beside the split folders
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    real = sorted(root.rglob("*.jpg"))
    for path in real:
        (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07")
        fork = root / "__MACOSX" / path.relative_to(root).parent / f"._{path.name}"
        fork.parent.mkdir(parents=True, exist_ok=True)
        fork.write_bytes(b"\x00\x05\x16\x07")
    exp = _load(tmp_path, registry, _folder_experiment(root))
    table = load_samples(exp).table
    assert sorted(table["path"]) == sorted(p.relative_to(root).as_posix() for p in real)
    assert set(table["split"]) == {"train", "val", "test"}


def test_a_patient_in_two_split_folders_is_refused(registry, tmp_path):
    root = tmp_path / "retfound"
    miniature.write_retfound(root)
    extra = r"pattern = '(?P<patient>\d+)$'"  # train_0 and test_0: patient "0" on both sides
    exp = _load(tmp_path, registry, _folder_experiment(root, extra))
    with pytest.raises(DataError, match="more than one split"):
        load_samples(exp)


def test_an_unmapped_class_folder_stops_the_run_before_any_folder_is_made(cli, tmp_path):
    root = tmp_path / "retina"
    miniature.write_retina(root, per_class=1)
    text = _folder_experiment(root / "dataset").replace(
        'mapping = { "0_normal" = "N", "1_dr" = "D" }', 'mapping = { "1_normal" = "N" }'
    )
    (tmp_path / "exp.toml").write_text(text)
    result = cli("run", "exp.toml", "--out", "runs", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert str(root / "dataset") in message
    for name in ("2_cataract", "2_glaucoma", "3_retina_disease"):
        assert f"'{name}' (1 image)" in message
    assert not (tmp_path / "runs").exists()


def test_a_label_that_is_not_odirkit_s_fails_when_the_file_is_read(cli, tmp_path):
    text = _folder_experiment(tmp_path).replace('"1_dr" = "D"', '"1_dr" = "DR"')
    (tmp_path / "exp.toml").write_text(text)
    result = cli("validate", "exp.toml", cwd=tmp_path)
    assert result.exit_code == 2
    assert "mapping.1_dr" in result.output and "'N'" in result.output


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mapping", '{ "4-1" = "D" }', "low end comes first"),
        ("mapping", "{}", "at least one class"),
        ("mapping", '{ "2" = "N", "2.0" = "D" }', "'2' and '2.0' are the same class"),
        ("pattern", "'(\\d+)_(left|right)'", "(?P<patient>"),
        ("pattern", "'(?P<patient>['", "not a regular expression"),
    ],
)
def test_a_malformed_mapping_or_pattern_fails_before_any_data_is_read(
    cli, tmp_path, key, value, message
):
    text = _folder_experiment(tmp_path / "nowhere").replace(
        'mapping = { "0_normal" = "N", "1_dr" = "D" }',
        f'mapping = {{ "0" = "N" }}\n{key} = {value}' if key != "mapping" else f"{key} = {value}",
    )
    (tmp_path / "exp.toml").write_text(text)
    result = cli("validate", "exp.toml", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_evaluate_names_the_key_a_collection_file_lacks(cli, tmp_path):
    # read before the run folder: no run is needed to see the message
    collection = tmp_path / "hrf.toml"
    collection.write_text('[data]\nroot = "data/hrf"\n')
    result = cli("evaluate", tmp_path / "no-run", "--data", collection)
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert f"{collection}: its [data] table has no dataset;" in message, message


# -- the table plugin ----------------------------------------------------------------------


def _eyepacs_table(root: Path, **params) -> pd.DataFrame:
    from odirkit_datasets.table import table

    base = {
        "file": "trainLabels.csv",
        "images": "train",
        "image_column": "image",
        "label_column": "level",
        "mapping": {"0": "N", "1-4": "D"},
    }
    return table(root=str(root), **{**base, **params})


def test_a_missing_column_is_named_with_the_closest_and_the_file(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=2)
    with pytest.raises(DataError) as caught:
        _eyepacs_table(tmp_path, label_column="levels")
    message = str(caught.value)
    assert "trainLabels.csv" in message and "'levels'" in message
    assert "did you mean 'level'" in message and "data.label_column" in message


def test_a_grade_outside_the_mapping_lists_values_and_counts(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=5)
    with pytest.raises(DataError) as caught:
        _eyepacs_table(tmp_path, mapping={"0": "N", "1-2": "D"})
    message = str(caught.value)
    levels = [r["level"] for r in _rows(tmp_path / "trainLabels.csv")]
    assert "column 'level'" in message
    for grade in ("3", "4"):
        count = levels.count(grade)
        assert f"'{grade}' ({count} image{'s' if count != 1 else ''})" in message


def test_images_the_table_names_but_the_folder_lacks_are_left_out_and_listed(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=3)
    (tmp_path / "train" / "13_left.jpeg").unlink()
    frame = _eyepacs_table(tmp_path)
    assert "train/13_left.jpeg" not in set(frame["path"]) and len(frame) == 5
    assert frame.attrs["odirkit_report"]["images_not_found"]["examples"] == ["13_left"]


def test_a_repeated_row_reads_its_image_once(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=3)
    rows = (tmp_path / "trainLabels.csv").read_text().splitlines()
    # the same image twice, once by its name without and once with its suffix
    repeat = rows[1].replace(",", ".jpeg,", 1)
    (tmp_path / "trainLabels.csv").write_text("\n".join([*rows, rows[1], repeat]) + "\n")
    frame = _eyepacs_table(tmp_path)
    assert len(frame) == 6 and not frame["path"].duplicated().any()
    assert frame.attrs["odirkit_report"]["repeated_rows_merged"] == 2


def test_an_image_named_twice_with_different_grades_is_refused(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=2)
    rows = (tmp_path / "trainLabels.csv").read_text().splitlines()
    image, level = rows[1].split(",")
    other = f"{image},{0 if level != '0' else 3}"
    (tmp_path / "trainLabels.csv").write_text("\n".join([*rows, other]) + "\n")
    with pytest.raises(DataError, match=rf"trainLabels.csv: .*'image'.*{image}.*different labels"):
        _eyepacs_table(tmp_path)


def test_a_wrong_image_folder_is_an_error_with_examples_of_both_sides(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=2)
    (tmp_path / "other").mkdir()
    miniature.write_fundus(tmp_path / "other" / "x.png", seed=0)
    with pytest.raises(DataError, match=r"none of the images.*'10_left'.*'x.png'"):
        _eyepacs_table(tmp_path, images="other")


def test_a_name_matching_two_files_asks_for_the_suffix(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=2)
    miniature.write_fundus(tmp_path / "train" / "10_left.png", seed=1)
    with pytest.raises(DataError, match=r"several such images.*data.suffix"):
        _eyepacs_table(tmp_path)
    assert len(_eyepacs_table(tmp_path, suffix=".jpeg")) == 4


def test_a_workbook_reads_like_the_csv(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=3)
    frame = pd.read_csv(tmp_path / "trainLabels.csv")
    frame.to_excel(tmp_path / "trainLabels.xlsx", index=False)
    from_csv = _eyepacs_table(tmp_path)
    from_xlsx = _eyepacs_table(tmp_path, file="trainLabels.xlsx")
    pd.testing.assert_frame_equal(from_csv, from_xlsx)


def test_a_patient_column_and_eye_column_are_read(tmp_path):
    miniature.write_eyepacs(tmp_path, patients=3)
    frame = pd.read_csv(tmp_path / "trainLabels.csv")
    frame["subject"] = frame["image"].str.split("_").str[0].map(lambda p: f"S{int(p) * 7}")
    frame["side"] = frame["image"].str.split("_").str[1].map({"left": "OS", "right": "OD"})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    table = _eyepacs_table(
        tmp_path, file="labels.csv", patient_column="subject", eye_column="side"
    ).set_index("path")
    assert table.loc["train/13_right.jpeg", "patient_id"] == "S91"
    assert table.loc["train/13_right.jpeg", "eye"] == "right"
    assert table.loc["train/16_left.jpeg", "eye"] == "left"


# -- speed ----------------------------------------------------------------------------------


def test_the_datasets_benchmark_reads_every_row_of_a_small_collection():
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "datasets.py"),
            "--rows",
            "60",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["images_read"] == {"table": 60, "folder": 60}
    assert result["patients"] == 30
    # speed is the benchmark's to print, not a test's to time: only that it measured one
    assert result["seconds"]["table_dataset"] > 0
