"""``predict``, ``score``, ``evaluate``, ``explain`` and ``baseline``: using a finished run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from odirkit.cli.common import (
    CheckpointOption,
    RunDirArgument,
    SetOption,
    VariantOption,
    _Commands,
    _fmt,
    _fresh,
    _with_interval,
    app,
    state,
)
from odirkit.console import err, out, plain
from odirkit.errors import ConfigError, RunError
from odirkit.files import write_text
from odirkit.labels import LABELS
from odirkit.runs import RunDirectory, VariantDirectory, find_variant, refuse_run_folder
from odirkit.runs.names import ReportFiles


@app.command()
def predict(
    ctx: typer.Context,
    run_dir: RunDirArgument,
    images: Annotated[
        Path, typer.Argument(help="A folder of <ID>_left/_right images, or a workbook or CSV.")
    ],
    out_file: Annotated[
        Path, typer.Option("--out", help="The CSV to write: ID and the run's labels.")
    ],
    variant: VariantOption = None,
    checkpoint: CheckpointOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Predict from photographs that fail the fundus check."),
    ] = False,
) -> None:
    """Per-patient probabilities in the ODIR-2019 submission format; every image checked
    first (written to <out>.images.csv)."""
    from odirkit.predict import predict as run_predict

    refuse_run_folder(out_file)
    result = run_predict(
        find_variant(run_dir, variant),
        images,
        state(ctx).registry(),
        checkpoint=checkpoint.value if checkpoint else None,
        force=force,
    )
    table = result.patients
    missing = [label for label in LABELS if label not in table.columns]
    if missing:
        err.print(
            plain(
                f"note: the run learned {', '.join(table.columns[1:])} only, so the file has "
                f"those columns; the challenge's others ({', '.join(missing)}) are left out "
                "(odirkit score scores the labels a file has)"
            ),
            highlight=False,
        )
    write_text(out_file, table.to_csv(index=False))
    report = out_file.with_name(f"{out_file.stem}.images.csv")
    write_text(report, result.images.to_csv(index=False))
    if result.left_out:
        shown = ", ".join(result.left_out[:10])
        more = f" and {len(result.left_out) - 10} more" if len(result.left_out) > 10 else ""
        err.print(
            f"[yellow]warning:[/yellow] {len(result.left_out)} patient(s) have no usable "
            f"photograph and are left out of the submission: {plain(shown)}{more} "
            f"(see {plain(str(report))}; --force predicts them anyway)",
            highlight=False,
        )
    unusable = int((~result.images["usable"]).sum())
    out.print(
        plain(
            f"{len(table)} patients -> {out_file}; {len(result.images)} images checked, "
            f"{unusable} unusable -> {report}"
        )
    )


@app.command()
def score(
    ground_truth: Annotated[Path, typer.Argument(help="Workbook or CSV: ID,N,...,O (0/1).")],
    predictions: Annotated[
        Path, typer.Argument(help="Submission CSV: ID,N,...,O, or ID and some labels.")
    ],
    sort: Annotated[
        bool, typer.Option("--sort", help="Match patients by ID instead of by row order.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score a submission as the ODIR-2019 challenge did: kappa, agreement F1 (the share of
    the flattened 0/1 answers that agree: not a disease's F1), AUC, final score; on the
    labels the submission has (ID,N,D from a two-label run: N and D)."""
    from odirkit.submission import score_files

    report = score_files(ground_truth, predictions, sort=sort)
    if report.missing:
        err.print(
            plain(
                f"note: {predictions} has labels {', '.join(report.labels)} only; scored on "
                f"those (the challenge scored all eight; missing: {', '.join(report.missing)})"
            ),
            highlight=False,
        )
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=float))
        return
    which = "" if not report.missing else f", labels {', '.join(report.labels)}"
    summary = Table(title=plain(f"ODIR-2019 score over {report.patients} patients{which}"))
    for column in ("kappa", "agreement F1 (challenge)", "AUC", "final score"):
        summary.add_column(column, justify="right")
    odir = report.odir
    summary.add_row(*(_fmt(odir[k]) for k in ("kappa", "f1", "auc", "final")))
    out.print(summary)
    out.print(
        "agreement F1: the share of the flattened 0/1 answers that agree (JSON: odir.f1); "
        f"not the micro F1 of the positive answers, {_fmt(report.metrics['f1_micro'])} "
        "(JSON: metrics.f1_micro)",
        highlight=False,
    )
    per_class = Table(title="per class (threshold 0.5)")
    for column in ("label", "AUC", "F1", "recall", "precision", "positives"):
        per_class.add_column(column, justify="right")
    for label, figures in report.metrics["per_class"].items():
        per_class.add_row(
            plain(label),
            _fmt(figures["auc"]),
            _fmt(figures["f1"]),
            _fmt(figures["recall"]),
            _fmt(figures["precision"]),
            str(figures["support"]),
        )
    out.print(per_class)


@app.command()
def evaluate(
    ctx: typer.Context,
    run_dir: Annotated[
        Path,
        typer.Argument(help="A finished run: a variant folder, or a run folder (each variant)."),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help=plain(
                "TOML file whose [data] table names the collection (an experiment file will "
                "do: its dataset, root and the plugin's keys are read)."
            ),
        ),
    ] = None,
    set_: SetOption = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The result's folder: <variant>/external/<name>."),
    ] = None,
) -> None:
    """External validation: score a finished run's reported checkpoint on another collection,
    with the run's preprocessing, fusion, temperature and operating points, and test the
    change from the internal test."""
    from odirkit.config import TRAINING_DATA_KEYS, apply_override, parse_override, read_toml
    from odirkit.config import resolve_external as resolve
    from odirkit.experiment import rebuild_report
    from odirkit.external import evaluate_external, verdict
    from odirkit.external_report import left_out

    doc = read_toml(data) if data is not None else {}
    if not isinstance(doc.get("data", {}), dict):
        raise ConfigError(f"{data}: [data] must be a table")
    document = {"data": dict(doc.get("data", {}))}
    for text in set_ or []:
        key, value = parse_override(text)
        if key[0] != "data":
            raise ConfigError(f"--set {text!r}: odirkit evaluate reads data.* keys only")
        apply_override(document, key, value, text)
    table = document["data"]
    lacking = [key for key in ("dataset", "root") if key not in table]
    if lacking:
        where = f"{data}: its [data] table has no {' and no '.join(lacking)}; " if data else ""
        raise ConfigError(
            f"{where}name the collection: --data FILE.toml (its [data] table) or --set "
            "data.dataset=... --set data.root=... (and the dataset's own keys)"
        )
    if name is not None:
        table["name"] = name
    elif data is not None and "name" not in table:
        table["name"] = str(doc.get("name") or data.stem)
    ignored = sorted(k for k in table if k in TRAINING_DATA_KEYS)
    if ignored:
        err.print(
            plain(
                f"note: {', '.join(ignored)} of [data] concern training and are not read: the "
                "run's own preprocessing, labels and evaluation apply"
            ),
            highlight=False,
        )
    reg = state(ctx).registry()
    external = resolve(table, reg, source=str(data) if data else None, overrides=set_ or [])
    variant = VariantDirectory(run_dir)
    if variant.exists:
        targets = [variant]
    else:
        targets = RunDirectory(run_dir).finished_variants() if run_dir.is_dir() else []
        if not targets:
            raise RunError(f"{run_dir}: no finished run (a variant folder with metrics.json)")
    for vdir in targets:
        result = evaluate_external(vdir, external, reg)
        summary = result.summary
        level = round(summary.final.confidence * 100)
        shown = Table(
            title=plain(
                f"{vdir.name} on {summary.name}: {summary.images} images, labels "
                f"{', '.join(summary.labels_scored)} ({level}% bootstrap intervals)"
            )
        )
        for column in ("metric", "internal test", "external", "external - internal"):
            shown.add_column(column, justify="right")
        for row in result.comparison.to_dict("records"):
            shown.add_row(
                plain(row["metric"]),
                _with_interval(row["internal"], [row["internal_low"], row["internal_high"]]),
                _with_interval(row["external"], [row["external_low"], row["external_high"]]),
                _with_interval(row["difference"], [row["difference_low"], row["difference_high"]])
                + (" *" if row["distinguishable"] else ""),
            )
        out.print(shown)
        for row in result.comparison.to_dict("records")[:5]:
            out.print(f"  {plain(verdict(row, summary.final.confidence))}", highlight=False)
        if summary.labels_not_scored:
            out.print(
                plain(
                    "not scored (the collection does not grade them): "
                    + ", ".join(summary.labels_not_scored)
                )
            )
        if left_out(summary):
            out.print(plain(f"images of {summary.name} {left_out(summary)}"))
        out.print(plain(f"written to {result.directory.path}"))
    run = targets[0].run
    if run.run_file.exists():
        rebuild_report(run.path)
        out.print(plain(f"report: {run.path / ReportFiles.HTML}"))


@app.command("explain")
def explain_command(
    ctx: typer.Context,
    run_dir: RunDirArgument,
    explainer: Annotated[
        list[str] | None,
        typer.Option(
            "--explainer",
            help="Explainer plugin (repeatable); default: the run's, else every installed one.",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Explain this class (repeatable); default: the predicted."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Explain these images (a file or folder) instead of the run's test ones.",
        ),
    ] = None,
    layer: Annotated[
        str | None, typer.Option("--layer", help="default, auto, or a dotted module name.")
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", min=1, help="Test images explained at most.")
    ] = 64,
    variant: VariantOption = None,
    checkpoint: CheckpointOption = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write.")] = None,
) -> None:
    """Explain a finished run's decisions: maps, overlays, grid, localisation, sanity."""
    from odirkit.explain import explain_run

    vdir = find_variant(run_dir, variant)
    if out_dir is not None:
        refuse_run_folder(out_dir)
    target = _fresh(out_dir or vdir.explain_dir)  # earlier results are never written over
    result = explain_run(
        vdir,
        state(ctx).registry(),
        explainers=explainer,
        labels=label,
        images=images,
        layer=layer,
        max_images=max_images,
        checkpoint=checkpoint.value if checkpoint else None,
        out_dir=target,
    )
    _print_explanations(result)
    out.print(plain(f"written to {target}"))


def _print_explanations(result: Any) -> None:
    if result.localisation is not None:
        table = Table(title="localisation against the lesion masks")
        columns = ("explainer", "label", "images", "pointing game", "random point")
        for column in (*columns, "energy in mask", "uniform map"):
            table.add_column(column, justify="right")
        for row in result.localisation.to_dict("records"):
            unreliable = not row.get("reliable", True)
            table.add_row(
                plain(row["explainer"] + (" (unreliable)" if unreliable else "")),
                plain(row["label"]),
                str(row["images"]),
                _fmt(row["pointing_game"]),
                _fmt(row["random_point"]),
                _fmt(row["energy_in_mask"]),
                _fmt(row["uniform_map"]),
            )
        out.print(table)
    if result.sanity is not None:
        table = Table(title="sanity: rank correlations inside the field of view (low is good)")
        for column in ("explainer", "with a re-initialised model", "across images", "verdict"):
            table.add_column(column, justify="right")
        for row in result.sanity.itertuples(index=False):
            table.add_row(
                plain(row.explainer),
                _fmt(row.rank_correlation_with_random_model),
                _fmt(row.input_dependence),
                "ok" if row.reliable else "[bold red]unreliable[/bold red]",
            )
        out.print(table)
    for line in result.flagged():
        err.print(f"[yellow]warning:[/yellow] {plain(line)}", highlight=False)


baseline_app = typer.Typer(
    cls=_Commands, help="Baselines that need no images.", no_args_is_help=True
)


app.add_typer(baseline_app, name="baseline")


@baseline_app.command("metadata")
def baseline_metadata(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Experiment TOML file (its data and split).")],
    set_: SetOption = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Take data and split from this variant.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the run.")] = Path("runs"),
) -> None:
    """Logistic regression on age and sex alone, on the experiment's split and metrics."""
    from odirkit.baseline import fit_metadata_baseline
    from odirkit.config import load_experiment

    experiments = load_experiment(
        file, state(ctx).registry(), overrides=set_ or [], variants=[variant] if variant else None
    )
    exp = experiments[0]
    refuse_run_folder(out_dir)
    vdir = RunDirectory.create(out_dir, exp.name).variant("baseline-metadata")
    result = fit_metadata_baseline(exp, vdir)
    scores = result.final
    table = Table(
        title=plain(f"{exp.name}: logistic regression on age and sex ({result.level} level)")
    )
    for column in ("micro F1", "macro F1", "macro recall", "macro AUC"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            _with_interval(scores.value(m), scores.interval(m))
            for m in ("f1_micro", "f1_macro", "recall_macro", "auc_macro")
        )
    )
    out.print(table)
    out.print(plain(f"written to {vdir}"))
