"""Launchers: the variants of a run as jobs, in a pool of processes here or as submitit
jobs (submitit's own local executor: real jobs, pickles, log files and requeueing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_experiment

TWO_VARIANTS = """
[variants.a]
[variants.b]
train.lr = 0.01
"""


def odirkit(args: list[str], cwd: Path, **popen) -> subprocess.Popen[str]:
    # one thread per process everywhere: a pool job and a local run compute alike
    env = {**os.environ, "ODIRKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "odirkit", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def the_run(out: Path) -> Path:
    (run,) = out.glob("*/*")
    return run


def history(variant: Path) -> pd.DataFrame:
    return pd.read_csv(variant / "metrics.csv").drop(columns=["seconds"])


def scores(variant: Path) -> dict:
    final = json.loads((variant / "metrics.json").read_text())
    return {k: final["final"][k] for k in ("f1_micro", "f1_macro", "auc_macro", "loss")}


@pytest.mark.slow
def test_a_pool_of_two_jobs_computes_what_a_local_run_does(tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=2) + TWO_VARIANTS)
    local = odirkit(["run", str(exp), "--out", "local"], tmp_path)
    code, output = finish(local)
    assert code == 0, output
    pool = odirkit(
        ["run", str(exp), "--out", "pool", "--launcher", "pool", "--jobs", "2"], tmp_path
    )
    code, output = finish(pool)
    assert code == 0, output

    reference, run = the_run(tmp_path / "local"), the_run(tmp_path / "pool")
    for variant in ("a", "b"):
        pd.testing.assert_frame_equal(history(reference / variant), history(run / variant))
        assert scores(reference / variant) == scores(run / variant)
    assert scores(run / "a") != scores(run / "b")  # the variants differ: not one run twice

    jobs = json.loads((run / "jobs.json").read_text())
    assert jobs["launcher"] == "pool" and jobs["slots"] == 2
    assert jobs["comparisons"] == 1  # written once, by the last job
    a, b = jobs["jobs"]["a"], jobs["jobs"]["b"]
    assert a["id"] != b["id"] and a["exit_code"] == b["exit_code"] == 0
    assert max(a["started"], b["started"]) < min(a["ended"], b["ended"])  # side by side
    for variant in ("a", "b"):
        assert "finished" in (run / variant / "job.log").read_text()
        assert not (run / variant / "running.json").exists()
    comparison = pd.read_csv(run / "comparison.csv")
    assert sorted(comparison["run"]) == ["a", "b"]
    assert "b vs a" in (run / "report.md").read_text()
    assert (run / "report.html").exists()


@pytest.mark.slow
def test_a_failed_job_is_reported_with_its_log_and_the_retry(tmp_path, phantom_root, cli):
    exp = tmp_path / "exp.toml"
    # variant b diverges at once: its job fails, a's job finishes
    text = tiny_experiment(phantom_root, epochs=2) + "[variants.a]\n[variants.b]\ntrain.lr = 1e30\n"
    exp.write_text(text)
    pool = odirkit(["run", str(exp), "--out", "out", "--launcher", "pool", "--jobs", "2"], tmp_path)
    code, output = finish(pool)
    assert code == 2, output
    assert "1 of 2 job(s) did not finish: b" in output
    assert "Traceback" not in output
    run = the_run(tmp_path / "out")

    result = cli("status", run, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    rows = {r["variant"]: r for r in found["variants"]}
    assert rows["a"]["status"] == "finished" and rows["a"]["epoch"] == 2
    assert rows["b"]["status"] == "failed"
    assert "TrainingDiverged" in rows["b"]["error"]
    assert rows["b"]["log"] == str(run / "b" / "job.log")
    assert any("loss became nan" in line for line in rows["b"]["log_tail"])
    assert found["retry"] == f"odirkit run --resume {run} --launcher pool --jobs 2"

    shown = cli("status", run)
    assert "b failed" in shown.stdout and "retry: odirkit run --resume" in shown.stdout
    listed = cli("runs", tmp_path / "out")
    assert "1/2 finished" in listed.stdout
    # the comparison was written once, with the failed variant listed as not finished
    jobs = json.loads((run / "jobs.json").read_text())
    assert jobs["comparisons"] == 1
    assert "b: failed after epoch" in (run / "report.md").read_text()


@pytest.mark.slow
def test_a_preempted_submitit_job_is_requeued_and_resumes_to_the_same_metrics(
    tmp_path, phantom_root
):
    import submitit  # noqa: F401  (a test dependency: missing, this fails, never skips)

    exp = tmp_path / "exp.toml"
    # two identical variants: b runs uninterrupted beside a, which is preempted midway
    exp.write_text(tiny_experiment(phantom_root, epochs=4) + "[variants.a]\n[variants.b]\n")
    args = ["run", str(exp), "--out", "out", "--launcher", "slurm"]
    launcher = odirkit([*args, "--set", 'launcher.cluster="local"'], tmp_path)
    deadline = time.time() + 300
    marker = None
    while time.time() < deadline and launcher.poll() is None:
        runs = list((tmp_path / "out").glob("*/*/a"))
        if runs and (runs[0] / "checkpoints" / "last.pt").exists():
            try:
                marker = json.loads((runs[0] / "running.json").read_text())
            except (OSError, ValueError):
                marker = None
            history_file = runs[0] / "metrics.csv"  # written just after last.pt
            done = len(pd.read_csv(history_file)) if history_file.exists() else 0
            if marker and done < 4:
                os.kill(int(marker["pid"]), signal.SIGUSR2)  # what SLURM sends on preemption
                break
        time.sleep(0.05)
    assert marker is not None, "the job ended before it could be preempted"
    code, output = finish(launcher)
    assert code == 0, output

    run = the_run(tmp_path / "out")
    jobs = json.loads((run / "jobs.json").read_text())
    assert jobs["launcher"] == "slurm" and jobs["comparisons"] == 1
    log = Path(jobs["jobs"]["a"]["log"]).read_text()
    assert "Requeued job" in log
    assert log.count("Starting with JobEnvironment") == 2
    assert "resuming" in log
    assert "Starting with JobEnvironment" in Path(jobs["jobs"]["b"]["log"]).read_text()
    pd.testing.assert_frame_equal(history(run / "a"), history(run / "b"))
    assert scores(run / "a") == scores(run / "b")
    assert sorted(pd.read_csv(run / "comparison.csv")["run"]) == ["a", "b"]


@pytest.mark.slow
def test_status_follows_the_jobs_of_a_pool(tmp_path, phantom_root, cli):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=3) + TWO_VARIANTS)
    pool = odirkit(["run", str(exp), "--out", "out", "--launcher", "pool", "--jobs", "1"], tmp_path)
    seen, listed = set(), set()
    while pool.poll() is None:
        runs = list((tmp_path / "out").glob("*/*"))
        if runs and (runs[0] / "jobs.json").exists():
            found = json.loads(cli("status", runs[0], "--json").stdout)
            rows = {r["variant"]: r for r in found["variants"]}
            seen.add((rows["a"]["status"], rows["b"]["status"]))
            if rows["a"]["status"] == "running":
                assert 0 <= rows["a"]["epoch"] <= 3 and rows["a"]["job"]
                (listing,) = json.loads(cli("runs", tmp_path / "out", "--json").stdout)
                listed.add((listing["status"], *listing["variants"].values()))
        time.sleep(0.1)
    code, output = finish(pool)
    assert code == 0, output
    # one job at a time: b waits, queued, while a runs; then a is done while b runs
    assert ("running", "queued") in seen
    assert ("finished", "running") in seen
    assert ("running", "running") not in seen
    assert ("running", "running", "queued") in listed
    found = json.loads(cli("status", the_run(tmp_path / "out"), "--json").stdout)
    assert [r["status"] for r in found["variants"]] == ["finished", "finished"]
    assert found["retry"] is None


@pytest.mark.slow
def test_a_pool_job_of_two_processes_is_a_ddp_run(tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=2))
    args = ["--launcher", "pool", "--set", "launcher.gpus_per_run=2"]  # on the CPU: 2 x gloo
    code, output = finish(odirkit(["run", str(exp), "--out", "out", *args], tmp_path))
    assert code == 0, output
    run = the_run(tmp_path / "out")
    final = json.loads((run / "default" / "metrics.json").read_text())
    assert final["distributed"] == {"world_size": 2, "backend": "gloo", "ranks_in_sync": True}
    assert json.loads((run / "jobs.json").read_text())["comparisons"] == 1


@pytest.mark.slow
def test_ctrl_c_stops_a_pool_at_checkpoints_and_resume_finishes_it(tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=4) + TWO_VARIANTS)
    pool = odirkit(
        ["run", str(exp), "--out", "pool", "--launcher", "pool", "--jobs", "2"], tmp_path
    )
    deadline = time.time() + 300
    while time.time() < deadline and pool.poll() is None:
        variants = list((tmp_path / "pool").glob("*/*/[ab]"))
        if len(variants) == 2 and all((v / "checkpoints" / "last.pt").exists() for v in variants):
            pool.send_signal(signal.SIGINT)  # the first Ctrl-C, as a terminal sends it
            break
        time.sleep(0.05)
    code, output = finish(pool)
    assert code == 130, output
    run = the_run(tmp_path / "pool")
    assert "--launcher pool --jobs 2" in output  # the command that continues
    stopped = [v for v in ("a", "b") if not (run / v / "metrics.json").exists()]
    assert stopped, "both jobs ended before the Ctrl-C reached them"
    for v in stopped:
        assert (run / v / "checkpoints" / "last.pt").exists()
        assert not (run / v / "failed.json").exists()
    assert json.loads((run / "jobs.json").read_text())["comparisons"] == 0

    args = ["run", "--resume", str(run), "--launcher", "pool", "--jobs", "2"]
    code, output = finish(odirkit(args, tmp_path))
    assert code == 0, output
    code, output = finish(odirkit(["run", str(exp), "--out", "local"], tmp_path))
    assert code == 0, output
    reference = the_run(tmp_path / "local")
    for v in ("a", "b"):  # resumed, each ends as an uninterrupted run does
        pd.testing.assert_frame_equal(history(reference / v), history(run / v))
        assert scores(reference / v) == scores(run / v)
    assert json.loads((run / "jobs.json").read_text())["comparisons"] == 1
