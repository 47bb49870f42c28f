"""Every script in benchmarks/ runs at a tiny size and prints the JSON it promises.

The benchmarks are not part of any run, so nothing else would notice a change that breaks
one. Each runs here in this process (as ``python benchmarks/NAME.py ARGS`` would), at a
size that takes seconds, and its output is parsed and read back.
"""

from __future__ import annotations

import json
import math
import runpy
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(name: str, args: list[str], capsys, monkeypatch) -> dict:
    """``python benchmarks/<name>.py ARGS`` in this process: its stdout parsed as JSON."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / f"{name}.py"), *args])
    capsys.readouterr()
    try:
        runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (None, 0), exc.code
    return json.loads(capsys.readouterr().out)


def rate(value: object) -> bool:
    """A measured throughput: a finite positive number."""
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def check_classic_augment(out: dict) -> None:
    assert out["image_size"] == 32 and out["batch"] == 2
    for setting, p in (("every_transform", 1.0), ("default_probabilities", 0.5)):
        assert out[setting]["probability"] == p
        assert rate(out[setting]["odirkit_batched_images_per_s"])
        assert rate(out[setting]["torchvision_per_image_images_per_s"])


def check_datasets(out: dict) -> None:
    assert out["rows"] == 40 and out["images_read"] == {"table": 40, "folder": 40}
    assert out["patients"] == 20  # two eyes each
    assert rate(out["rows_per_second_table"])


def check_preprocessing(out: dict) -> None:
    assert out["photographs"] == 4 and out["output_size"] == 32
    assert rate(out["odirkit_per_s"]["one_thread"]) and rate(out["cache_read_per_s"])
    assert rate(out["plain_pillow_per_s"]["one_process"]) and rate(out["fundus_check_per_s"])


def check_fundus_check(out: dict) -> None:
    (folder,) = out["folders"].values()
    photographs = folder["photographs"]
    assert photographs["images"] == 6
    assert photographs["passed"] == 6  # the phantom's photographs are fundi
    assert {"dark", "haze", "blur", "tight"} <= set(folder)  # --variants


def check_phantom_difficulty(out: dict) -> None:
    assert out["patients"] == 20 and {"realistic", "easy"} <= set(out)
    auc = out["realistic"]["histogram_logistic_auc"]
    assert out["checks"]["histogram_at_most_0.80"] == (auc <= 0.80)
    # 20 patients: no label has ten on each side, so the shortcut check cannot be made
    assert out["realistic"]["acquisition_shortcut_auc"] == {}
    assert out["checks"]["acquisition_below_0.60"] is None


def check_models(out: dict) -> None:
    (result,) = out["results"].items()
    label, settings = result
    assert label == "cnn@64"
    assert rate(settings["fp32"]["train"]) and rate(settings["fp32"]["inference"])


def check_engine_overhead(out: dict) -> None:
    assert out["image_size"] == 64 and out["epochs_measured"] == 1
    assert rate(out["engine_images_per_s"]) and rate(out["plain_images_per_s"])
    # from the unrounded ratio: on a busy machine the rates are a few images per second, and
    # their rounding to 0.1 alone moves the percentage by more than any fixed tolerance
    assert out["overhead_percent"] == pytest.approx(100 * (1 / out["ratio"] - 1), rel=0.01, abs=0.5)
    assert out["ratio"] == pytest.approx(
        out["engine_images_per_s"] / out["plain_images_per_s"], rel=0.1
    )


def check_explain(out: dict) -> None:
    (results,) = out["results"].values()
    assert results["attention_rollout"].startswith("not applicable")  # a CNN has no attention
    assert rate(results["gradcam"]) and rate(results["smoothgrad"])


def check_predict(out: dict) -> None:
    assert out["images"] == 4 and out["photograph_height"] == 128
    assert rate(out["end_to_end_images_per_s"]) and rate(out["model_forward_images_per_s"])


def check_launchers(out: dict) -> None:
    assert out["runs"] == 4 and out["epochs"] == 1
    assert out["max_val_loss_gap"] < 1e-3  # the pool trains what the local runs train
    assert rate(out["local_seconds"]) and rate(out["pool_jobs2_seconds"])


def check_ddp_scaling(out: dict) -> None:
    assert rate(out["processes_1"]) and rate(out["processes_2"])
    assert out["speedup"] == pytest.approx(out["processes_2"] / out["processes_1"], abs=0.01)


#: (script, its arguments, slow: more than 5 s here, check); {photos}: six phantom photographs
CASES: list[tuple[str, str, bool, Callable[[dict], None]]] = [
    ("classic_augment", "--size 32 --batch 2 --repeats 1", False, check_classic_augment),
    ("datasets", "--rows 40 --repeats 1", False, check_datasets),
    (
        "preprocessing",
        "--images 4 --height 128 --size 32 --repeats 1 --no-train",
        False,
        check_preprocessing,
    ),
    ("fundus_check", "{photos} --size 64 --variants --list-failures 1", False, check_fundus_check),
    ("phantom_difficulty", "--patients 20 --size 96 --no-cnn", False, check_phantom_difficulty),
    ("models", "--batch 1 --steps 1 --models cnn --size 64", False, check_models),
    (
        "engine_overhead",
        "--epochs 1 --patients 16 --image-size 64 --photo-size 96 --batch-size 8",
        False,
        check_engine_overhead,
    ),
    ("explain", "--batch 1 --repeats 1 --models cnn", True, check_explain),
    ("predict", "--images 4 --height 128", True, check_predict),
    ("launchers", "--epochs 1 --patients 16", True, check_launchers),
    ("ddp_scaling", "--epochs 2 --patients 16", True, check_ddp_scaling),
]


def test_every_benchmark_has_a_smoke_test():
    assert {p.stem for p in BENCHMARKS.glob("*.py")} - {"mutation"} == {c[0] for c in CASES}


@pytest.mark.parametrize(
    ("name", "args", "check"),
    [
        pytest.param(name, args, check, id=name, marks=[pytest.mark.slow] if slow else [])
        for name, args, slow, check in CASES
    ],
)
def test_benchmark_runs_small_and_prints_its_json(
    name, args, check, phantom_root, tmp_path, capsys, monkeypatch
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((phantom_root / "ODIR-5K_Training_Dataset").glob("*.jpg"))[:6]:
        shutil.copy(path, photos)
    argv = [str(photos) if a == "{photos}" else a for a in args.split()]
    out = run_benchmark(name, argv, capsys, monkeypatch)
    check(out)


# -- benchmarks/mutation.py: its own parts (a mutmut run takes minutes; not here) ------------


def mutation_script():
    return runpy.run_path(str(BENCHMARKS / "mutation.py"))


def test_mutation_score_counts_killed_over_non_equivalent_and_lists_the_rest():
    score = mutation_script()["score"]
    result = {
        "module": "odirkit/x.py",
        "finished": True,
        "seconds": 1.0,
        "statuses": {
            "a_1": "killed",
            "a_2": "timeout",
            "a_3": "survived",
            "a_4": "no tests",
            "a_5": "survived",
            "a_6": "not checked",
        },
        "diffs": {"a_3": "-x\n+y", "a_4": "", "a_5": ""},
    }
    summary = score(result, {"a_5": "dtype only", "a_2": "renumbered", "a_9": "gone"})
    # 2 killed of 4 counted: a_5 is equivalent, a_6 was never run; a_2, listed too, was
    # killed: no equivalent, but a stale entry
    assert summary["killed"] == 2 and summary["score"] == 0.5
    assert summary["equivalent"] == {"a_5": "dtype only"} and summary["stale"] == ["a_2"]
    assert set(summary["survivors"]) == {"a_3", "a_4"}
    assert summary["survivors"]["a_3"] == {"status": "survived", "diff": "-x\n+y"}


def test_mutation_scratch_project_mutates_one_module_with_its_own_tests(tmp_path):
    script = mutation_script()
    tests = script["MODULES"]["odirkit/calibration.py"]
    script["scratch_project"](tmp_path, "odirkit/calibration.py", tests)
    config = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]
    assert config["mutmut"]["only_mutate"] == ["odirkit/calibration.py"]
    assert config["mutmut"]["pytest_add_cli_args_test_selection"] == ["tests/test_evaluation.py"]
    assert config["mutmut"]["pytest_add_cli_args"][-2:] == ["-k", "calibration or temperature"]
    assert "slow" in " ".join(config["pytest"]["ini_options"]["markers"])
    assert (tmp_path / "odirkit" / "calibration.py").read_text() == (
        BENCHMARKS.parent / "odirkit" / "calibration.py"
    ).read_text()  # a copy: mutmut's changes stay out of the working tree
    assert (tmp_path / "tests").resolve() == BENCHMARKS.parent / "tests"
    # the shipped experiments, which some tests run, go where mutmut runs the tests
    assert config["mutmut"]["also_copy"] == ["experiments"]
    assert (tmp_path / "experiments" / "normal_vs_diabetes.toml").is_file()


def test_a_plugin_module_is_mutated_in_a_copy_of_its_package_imported_first(tmp_path):
    script = mutation_script()
    module = "plugins/odirkit_datasets/keywords.py"
    script["scratch_project"](tmp_path, module, script["MODULES"][module])
    config = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["mutmut"]
    # mutmut puts its copy of the project's top folder first on sys.path: the package is
    # imported from there, by the name its entry points give
    assert config["only_mutate"] == ["odirkit_datasets/keywords.py"]
    assert config["source_paths"] == ["odirkit", "odirkit_datasets"]
    copied = tmp_path / "odirkit_datasets" / "keywords.py"
    assert (
        not copied.is_symlink() and copied.read_text() == (BENCHMARKS.parent / module).read_text()
    )


def test_the_functions_mutated_alone_exist_in_their_module():
    script = mutation_script()
    for module, patterns in script["FUNCTIONS"].items():
        assert module in script["MODULES"]
        source = (BENCHMARKS.parent / module).read_text()
        for pattern in patterns:
            owner, function = pattern.split("xǁ")[1].split("__mutmut_")[0].split("ǁ")
            assert f"class {owner}" in source and f"def {function}(" in source, pattern


def test_mutation_tests_only_the_mutants_named_else_the_functions_listed(capsys):
    script = mutation_script()
    asked = []

    def run_module(module, tests, *, minutes, jobs, mutants=None):
        asked.append((module, tests, mutants))
        name = module.replace("/", ".").removesuffix(".py") + ".x_f__mutmut_1"
        return {
            "module": module,
            "finished": True,
            "seconds": 1.0,
            "statuses": {name: "killed"},
            "diffs": {},
        }

    script["main"].__globals__["run_module"] = run_module
    script["main"](["odirkit/tta.py", "--mutants", "*_f__mutmut_1", "*_g__mutmut_*"])
    script["main"](["odirkit/tta.py"])
    script["main"](["odirkit/tta.py", "--tests", "tests/test_a.py", "tests/test_b.py"])
    selection = script["MODULES"]["odirkit/tta.py"]
    assert asked == [
        ("odirkit/tta.py", selection, ["*_f__mutmut_1", "*_g__mutmut_*"]),
        ("odirkit/tta.py", selection, None),
        ("odirkit/tta.py", ["tests/test_a.py", "tests/test_b.py"], None),
    ]
    assert "100.0% killed (1 of 1" in capsys.readouterr().out


def test_mutmut_is_run_on_the_mutants_named_else_on_the_functions_listed(monkeypatch):
    script = mutation_script()
    commands = []

    class Popen:
        def __init__(self, command, **kwargs):
            commands.append(command)
            self.pid, self.returncode = 0, 0

        def communicate(self, timeout=None):
            return "", None

    def run(command, **kwargs):  # mutmut results: one mutant; mutmut show: its diff
        out = "    odirkit.tta.x_f__mutmut_1: survived" if "results" in command else "diff"
        return subprocess.CompletedProcess(command, 0, stdout=out)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    monkeypatch.setattr(subprocess, "run", run)
    run_module = script["run_module"]
    result = run_module(
        "odirkit/tta.py", ["tests/test_tta.py"], minutes=1, jobs=2, mutants=["*_f*"]
    )
    assert result["statuses"] == {"odirkit.tta.x_f__mutmut_1": "survived"}
    run_module("odirkit/engine/loop.py", ["tests/test_checkpoint.py"], minutes=1, jobs=2)
    run_module("odirkit/tta.py", ["tests/test_tta.py"], minutes=1, jobs=2)
    tail = ["run", "--max-children", "2"]
    assert [c[c.index("run") :] for c in commands] == [
        [*tail, "*_f*"],
        [*tail, *script["FUNCTIONS"]["odirkit/engine/loop.py"]],
        tail,  # all of it
    ]


def test_every_module_to_mutate_and_every_equivalent_mutant_exists():
    script = mutation_script()
    root = BENCHMARKS.parent
    assert all((root / module).is_file() for module in script["MODULES"])
    equivalent = tomllib.loads((BENCHMARKS / "mutation_equivalent.toml").read_text())
    for module, mutants in equivalent.items():
        assert module in script["MODULES"]
        dotted = module.removeprefix("plugins/").removesuffix(".py").replace("/", ".")
        source = (root / module).read_text()
        for name, entry in mutants.items():
            # mutmut's names: <module>.x_<function>__mutmut_<n>, or for a method
            # <module>.xǁ<class>ǁ<method>__mutmut_<n>
            assert name.startswith((dotted + ".x_", dotted + ".xǁ")) and entry["reason"], name
            rest = name[len(dotted) + 2 :].split("__mutmut_")[0]
            if rest.startswith("ǁ"):
                _, owner, function = rest.split("ǁ")
                assert f"class {owner}" in source, name
            else:
                function = rest.removeprefix("_")
            assert f"def {function}(" in source, name
