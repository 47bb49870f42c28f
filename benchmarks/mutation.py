"""Mutation testing: how many small bugs planted in a module do its own fast tests catch?

For each module named on the command line (default: the modules that compute what users
read, ``MODULES`` below), runs mutmut (https://mutmut.readthedocs.io) against that module
alone, with that module's own fast test files, in a scratch copy of the project, within a
time bound; then prints, per module, the score (killed mutants / non-equivalent mutants)
and every surviving mutant with its diff. Mutants listed in
``benchmarks/mutation_equivalent.toml`` (each with the reason it cannot change behaviour)
are left out of the score and listed apart.

Prints one JSON object (``--json``) or a readable report. Not run by the test suite: a
module takes minutes.

    python benchmarks/mutation.py [MODULE ...] [--minutes 20] [--jobs 2] [--json]
    python benchmarks/mutation.py odirkit/calibration.py --minutes 5
    python benchmarks/mutation.py odirkit/data/fundus_check.py --mutants '*_outline__mutmut_4'

``--mutants`` tests only the mutants whose names match (mutmut's names, ``*`` a wildcard;
the survivors a report listed, say): after tests are added, the survivors of a full run
are re-run in minutes, and every other mutant is reported as not tested. Tests only ever
added kill what they killed before, so the full run's killed and the re-run's add up.
``--tests`` replaces the module's test selection (test files) for such a re-run:
the test files written for the survivors, without the slower ones that let them live.

A mutant counts as killed when a test fails or it times out; "no tests" (no selected test
calls the mutated function) and "survived" both count against the score. Interrupted
(Ctrl-C, or the time bound), a module reports what was tested so far; nothing in the
working tree is changed either way (mutmut works in its scratch copy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = Path(__file__).with_name("mutation_equivalent.toml")

#: per module, its own fast tests: pytest arguments (files, then a -k filter where a file
#: also trains models end to end, which a mutant should not wait for)
MODULES: dict[str, list[str]] = {
    "odirkit/metrics.py": [
        "tests/test_metrics.py",
        "tests/test_evaluation.py",
        "-k",
        "test_metrics or multi_label or micro_f1 or one_half or thresholds or operating or macro "
        "or sklearn or auc or metrics_of",
    ],
    "odirkit/bootstrap.py": [
        "tests/test_bootstrap.py",
        "tests/test_evaluation.py",
        "tests/test_learning.py",
        "tests/test_report.py",
        "-k",
        "bootstrap or paired or verdict or answer or interval",
    ],
    "odirkit/calibration.py": [
        "tests/test_evaluation.py",
        "-k",
        "calibration or temperature",
    ],
    "odirkit/thresholds.py": [
        "tests/test_evaluation.py",
        "-k",
        "threshold or operating or one_half",
    ],
    "odirkit/fusion.py": ["tests/test_evaluation.py", "-k", "fus or patient"],
    "odirkit/comparison.py": [
        "tests/test_comparison.py",
        "tests/test_learning.py",
        "tests/test_report.py",
    ],
    "odirkit/data/split.py": [
        "tests/test_split.py",
        "tests/test_data.py",
        "tests/test_evaluation.py",
        "-k",
        "split or undersampl or weight or fold or shares",
    ],
    "odirkit/data/pairs.py": ["tests/test_both_eyes.py", "-k", "pair or photograph"],
    # its own tests alone: test_data.py, which preprocesses whole folders, made each mutant
    # take 20 s and left the run partial; test_images.py tests every function in 90 s
    "odirkit/data/images.py": ["tests/test_images.py"],
    "odirkit/data/fundus_check.py": [
        "tests/test_fundus_reasons.py",
        "tests/test_fundus_outline.py",
        "tests/test_fundus_pupil.py",
        "tests/test_fundus_check.py",
        "-k",
        "not predict and not datasets_are and not verdicts",  # those train a model first
    ],
    "odirkit/params.py": ["tests/test_params.py", "tests/test_config.py", "tests/test_plugins.py"],
    "odirkit/tta.py": ["tests/test_tta.py"],
    "plugins/odirkit_datasets/keywords.py": [
        "tests/test_keywords.py",
        "tests/test_odir5k.py",
        "-k",
        "keyword or rule or normal_only or odd",
    ],
    "plugins/odirkit_datasets/odir5k.py": [
        "tests/test_odir5k.py",
        "tests/test_conformance.py",
        "-k",
        "odir5k",  # all of test_odir5k.py, and the dataset's conformance test
    ],
    "plugins/odirkit_augment/classic.py": [
        "tests/test_classic_parts.py",
        "tests/test_augment.py",
        "-k",
        "not dcgan and not gan_variant",
    ],
    "odirkit/explain/scores.py": [
        "tests/test_explain_scores.py",
        "tests/test_explain.py",
        "tests/test_report.py",
        "-k",
        "scores or pointing or rank or sanity or locali or chance",  # (scores: its own file)
    ],
    "odirkit/engine/loop.py": ["tests/test_checkpoint.py"],
    "odirkit/engine/checkpoint.py": ["tests/test_checkpoint.py"],
    "odirkit/config/schema.py": ["tests/test_config_rules.py", "tests/test_config.py"],
}
#: of a module that does more than the issue names, the functions mutated (mutmut's names,
#: ``*`` a wildcard): the epoch loop's checkpoint and resume logic, not its training
FUNCTIONS: dict[str, list[str]] = {
    "odirkit/engine/loop.py": [
        "odirkit.engine.loop.xǁEpochLoopǁstate__mutmut_*",
        "odirkit.engine.loop.xǁEpochLoopǁsave__mutmut_*",
        "odirkit.engine.loop.xǁEpochLoopǁrestore__mutmut_*",
        "odirkit.engine.loop.xǁEpochLoopǁ_improved__mutmut_*",
        "odirkit.engine.loop.xǁEpochLoopǁend_epoch__mutmut_*",  # best.pt, patience
    ],
}
#: the fast tier, stopping at the first failure, nothing cached between mutants
PYTEST_OPTIONS = ["-m", "not slow", "-x", "-q", "-p", "no:cacheprovider"]
STATUS_LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
KILLED = {"killed", "timeout"}
#: not tested (yet): left out of the score
UNTESTED = {"not checked", "check was interrupted by user", "skipped"}


def scratch_project(work: Path, module: str, tests: list[str]) -> None:
    """A copy of the project in ``work`` whose pyproject makes mutmut mutate ``module``
    only and select ``tests``; the package is copied (mutmut mutates its copy of it), the
    tests and plugins are links. A module of a built-in plugin (``plugins/<package>/...``)
    has its package copied to the top of ``work`` too, where mutmut imports it from (its
    entry points name the package, not the folder)."""
    (work / "tests").symlink_to(ROOT / "tests")
    (work / "plugins").symlink_to(ROOT / "plugins")
    (work / "experiments").symlink_to(ROOT / "experiments")  # tests run the shipped ones
    packages = ["odirkit"]
    if module.startswith("plugins/"):
        packages.append(module.split("/")[1])
    for package in packages:
        source = ROOT / "plugins" / package if package != "odirkit" else ROOT / package
        shutil.copytree(source, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pytest_options = project["tool"]["pytest"]["ini_options"]
    files = [t for t in tests if t.startswith("tests/")]
    options = [t for t in tests if not t.startswith("tests/")]
    lines = [
        "[tool.pytest.ini_options]",
        f"markers = {json.dumps(pytest_options.get('markers', []))}",
        f"filterwarnings = {json.dumps(pytest_options.get('filterwarnings', []))}",
        "",
        "[tool.mutmut]",
        f"source_paths = {json.dumps(packages)}",
        'also_copy = ["experiments"]',  # beside the tests mutmut copies itself
        f"only_mutate = {json.dumps([module.removeprefix('plugins/')])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(files)}",
        f"pytest_add_cli_args = {json.dumps([*PYTEST_OPTIONS, *options])}",
        # torch is not safe to fork after it has run: fork the workers from a clean server
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "timeout_multiplier = 5.0",
    ]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")


def mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ODIRKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_module(
    module: str, tests: list[str], *, minutes: float, jobs: int, mutants: list[str] | None = None
) -> dict:
    """mutmut on one module within ``minutes``; the statuses of its mutants. ``mutants``:
    the mutant names (globs) to test, else those of ``FUNCTIONS`` (else all)."""
    with tempfile.TemporaryDirectory(prefix="odirkit-mutation-") as tmp:
        work = Path(tmp)
        scratch_project(work, module, tests)
        started = time.monotonic()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mutmut",
                "run",
                "--max-children",
                str(jobs),
                *(mutants or FUNCTIONS.get(module, [])),
            ],
            cwd=work,
            env={**os.environ, "ODIRKIT_QUIET": "1", "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its workers end with it
        )
        finished = True
        try:
            output, _ = process.communicate(timeout=minutes * 60)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            finished = False
            os.killpg(process.pid, signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
            if isinstance(exc, KeyboardInterrupt):
                raise
        seconds = time.monotonic() - started
        statuses = {}
        for line in mutmut(work, "results", "--all", "true").stdout.splitlines():
            match = STATUS_LINE.match(line)
            if match:
                statuses[match["name"]] = match["status"].strip()
        diffs = {
            name: mutmut(work, "show", name).stdout
            for name, status in statuses.items()
            if status not in KILLED | UNTESTED  # the untested are not listed: no diff needed
        }
    if not statuses:
        return {"module": module, "error": output[-3000:], "seconds": round(seconds, 1)}
    return {
        "module": module,
        "tests": tests,
        "finished": finished and process.returncode == 0,
        "seconds": round(seconds, 1),
        "statuses": statuses,
        "diffs": diffs,
    }


def score(result: dict, equivalent: dict[str, str]) -> dict:
    """Killed / non-equivalent, with the survivors and the equivalent mutants apart. A
    mutant listed as equivalent that a test killed is no equivalent (the list is stale:
    the module changed and mutmut numbered its mutants anew): it counts as killed and is
    named under ``stale``."""
    statuses = result["statuses"]
    tested = {n: s for n, s in statuses.items() if s not in UNTESTED}
    stale = sorted(n for n, s in tested.items() if n in equivalent and s in KILLED)
    equivalent = {n: r for n, r in equivalent.items() if n not in stale}
    counted = {n: s for n, s in tested.items() if n not in equivalent}
    killed = sum(s in KILLED for s in counted.values())
    survivors = {n: s for n, s in counted.items() if s not in KILLED}
    return {
        "module": result["module"],
        "mutants": len(statuses),
        "tested": len(tested),
        "equivalent": {n: equivalent[n] for n in tested if n in equivalent},
        "stale": stale,
        "killed": killed,
        "score": round(killed / len(counted), 4) if counted else None,
        "finished": result["finished"],
        "seconds": result["seconds"],
        "survivors": {
            n: {"status": s, "diff": result["diffs"].get(n, "")} for n, s in survivors.items()
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules",
        nargs="*",
        default=list(MODULES),
        help=f"modules to mutate; default: all of {', '.join(MODULES)}",
    )
    parser.add_argument(
        "--minutes", type=float, default=20.0, help="time bound per module (default: 20)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default: 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mutants", nargs="+", metavar="NAME", help="test only these mutants (globs)"
    )
    parser.add_argument(
        "--tests", nargs="+", metavar="FILE", help="test files instead of the module's"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"no test selection for {', '.join(unknown)}; known: {', '.join(MODULES)}")
    equivalent_by_module = (
        tomllib.loads(EQUIVALENT_FILE.read_text()) if EQUIVALENT_FILE.exists() else {}
    )
    report = {"modules": []}
    for module in args.modules:
        result = run_module(
            module,
            args.tests or MODULES[module],
            minutes=args.minutes,
            jobs=args.jobs,
            mutants=args.mutants,
        )
        if "error" in result:
            report["modules"].append(result)
            print(f"{module}: mutmut did not run\n{result['error']}", file=sys.stderr)
            continue
        equivalent = {
            name: entry["reason"] for name, entry in equivalent_by_module.get(module, {}).items()
        }
        summary = score(result, equivalent)
        report["modules"].append(summary)
        if not args.json:
            print_summary(summary)
    if args.json:
        print(json.dumps(report, indent=2))
    return report


def print_summary(summary: dict) -> None:
    share = "n/a" if summary["score"] is None else f"{100 * summary['score']:.1f}%"
    bound = "" if summary["finished"] else " (time bound reached: partial)"
    print(
        f"{summary['module']}: {share} killed ({summary['killed']} of "
        f"{summary['tested'] - len(summary['equivalent'])} non-equivalent mutants; "
        f"{len(summary['equivalent'])} equivalent; {summary['seconds']:.0f} s){bound}"
    )
    for name, reason in summary["equivalent"].items():
        print(f"  equivalent {name}: {reason}")
    for name in summary["stale"]:
        print(f"  killed, yet listed as equivalent (remove it from {EQUIVALENT_FILE.name}): {name}")
    for name, survivor in summary["survivors"].items():
        print(f"  {survivor['status']} {name}")
        for line in survivor["diff"].splitlines():
            if line.startswith(("-", "+")) and not line.startswith(("---", "+++")):
                print(f"      {line}")
    print(flush=True)


if __name__ == "__main__":
    main()
