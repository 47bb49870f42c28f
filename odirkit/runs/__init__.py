"""Run folders: the one place that knows their layout.

``odirkit run FILE`` writes::

    runs/<name>/<timestamp>/              RunDirectory
        experiment.toml      the experiment file as it was
        run.json             variants, overrides, source, start time
        jobs.json            pool/slurm launchers: each variant's job id and log
        report.md            verdicts, test results with intervals, figures
        comparison.csv/.json/.png, comparison_test.png, recall_per_class.png
        <variant>/                        VariantDirectory
            config.json      the resolved configuration (every default filled in)
            running.json     while a process runs it: pid, host, job id, start
            job.log          the job's output (pool launcher)
            environment.json versions, plugins, device, seed, git commit
            data.json        image and patient counts; split.csv: each image's side
            metrics.csv      one row per epoch: training loss, validation metrics
            metrics.json     the test patients scored once (written last: done)
            predictions.csv, patient_predictions.csv, val_predictions.csv
            checkpoints/     last.pt and best.pt
            figures/         the run's figures
            explain/         explanations
            augment/         what augmenters wrote
            external/<name>/ ExternalDirectory: the reported checkpoint scored on another
                             collection (metrics.json, predictions, comparison with the test)

Everything else asks these objects for a path or a file's content; no other
module spells a file name of the run folder.
"""

from __future__ import annotations

from odirkit.runs.documents import (
    CHECKPOINTS,
    RELATIVE_PATHS,
    process_alive,
)
from odirkit.runs.folders import (
    find_variant,
    finished_variants,
    refuse_run_folder,
    run_folder_around,
)
from odirkit.runs.layout import (
    ExternalDirectory,
    RunDirectory,
    VariantDirectory,
    rebase_paths,
)
from odirkit.runs.names import (
    AUGMENT_FOLDER,
    AUGMENTER_REPORT,
    LOGGERS,
    ExplainFiles,
    FigureFiles,
    ReportFiles,
    SearchFiles,
)
from odirkit.runs.status import (
    list_runs,
    retry_command,
    run_status,
    tail,
    variant_status,
)

__all__ = [
    "AUGMENTER_REPORT",
    "AUGMENT_FOLDER",
    "CHECKPOINTS",
    "LOGGERS",
    "RELATIVE_PATHS",
    "ExplainFiles",
    "ExternalDirectory",
    "FigureFiles",
    "ReportFiles",
    "RunDirectory",
    "SearchFiles",
    "VariantDirectory",
    "find_variant",
    "finished_variants",
    "list_runs",
    "process_alive",
    "rebase_paths",
    "refuse_run_folder",
    "retry_command",
    "run_folder_around",
    "run_status",
    "tail",
    "variant_status",
]
