"""What report.md and report.html say, read plainly: the answer first, in the study's terms,
curves one line per variant, tables without Python values, every figure captioned,
explanations read against their baselines, GAN samples in order with a word on
convergence. Built from synthetic runs: no training here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import t

from odirkit.bootstrap import PairedDifference
from odirkit.comparison import PairTest, VariantTest
from odirkit.report import RunSummary, answer_of, comparison_table, shown_table, write_report

VARIANTS = ("default", "augmented", "gan")


def summary(name: str, recall: float, *, learned: bool = True, seed: int = 0) -> RunSummary:
    """A finished two-label run (N vs D) with three epochs, its recall of D as given."""
    epochs = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.7, 0.6, 0.5],
            "val_loss": [0.7, 0.65, 0.6],
            "val_f1_micro": [0.5, 0.6, 0.65 + 0.01 * seed],
            "val_f1_D": [0.3, 0.4, 0.5 + 0.02 * seed],
            "val_recall_D": [0.2, 0.4, recall],
            "val_recall_N": [0.8, 0.7, 0.7],
        }
    )
    final = {
        "f1_micro": 0.65,
        "f1_macro": 0.6,
        "recall_macro": 0.6,
        "auc_macro": 0.7,
        "threshold_rule": "0.5",
        "thresholds": {},
        "temperature": None,
        "per_class": {
            "N": {"recall": 0.7, "f1": 0.7, "specificity": recall, "support": 20},
            "D": {"recall": recall, "f1": 0.5, "specificity": 0.7, "support": 10},
        },
        "intervals": {"recall_D": [recall - 0.2, recall + 0.2], "f1_D": [0.3, 0.7]},
    }
    learning = {
        "train_loss": 0.5 if learned else 0.69,
        "chance_loss": 0.69,
        "val_auc": 0.7,
        "val_auc_interval": [0.6, 0.8],
        "reasons": [] if learned else ["training loss 0.690 not below chance (0.690) by 10%"],
        "learned": learned,
    }
    return RunSummary(
        f"{name}-seed{seed}",
        epochs,
        {
            "task": "single_label",
            "labels": ["N", "D"],
            "checkpoint": "best",
            "checkpoint_epoch": 3,
            "best": {"epoch": 3, "monitor": "f1_micro", "value": 0.6},
            "final": final,
            "learning": learning,
        },
        ["N", "D"],
    )


#: each seed's recall of D above the variant's base: over three seeds a mean (+0.02) that is
#: not the median (+0.01), so a summary that took the median would show
SEED_OFFSETS = (0.0, 0.01, 0.05)


def runs(recalls: dict[str, float], seeds: int = 3, not_learned: str = "") -> list[RunSummary]:
    return [
        summary(v, recalls[v] + SEED_OFFSETS[s], seed=s, learned=f"{v}-seed{s}" != not_learned)
        for v in recalls
        for s in range(seeds)
    ]


def paired(candidate: str, difference: float, p: float, seeds: int = 3) -> VariantTest:
    """``candidate`` against default on the recall of D over ``seeds`` paired runs."""
    pairs = [
        PairTest(s, None, 30, [PairedDifference("recall_D", difference, [-0.1, 0.3], p)])
        for s in range(seeds)
    ]
    return VariantTest(
        candidate,
        "default",
        pairs=pairs,
        over_runs={"recall_D": {"mean": difference, "p_value": p}},
        single_label=True,
    )


def answer(found: list[RunSummary], tests: list[VariantTest]):
    table = comparison_table(found, resamples=0, metrics=["f1_D", "recall_D"])
    return answer_of(found, table, tests, metrics=["f1_D", "recall_D"], confidence=0.95)


# -- the answer -------------------------------------------------------------------------


def test_the_answer_gives_the_verdict_in_words_with_the_means_over_seeds():
    found = runs({"default": 0.40, "augmented": 0.45, "gan": 0.70})
    result = answer(found, [paired("augmented", 0.05, 0.40), paired("gan", 0.30, 0.001)])
    still, better = result.sentences
    assert still.startswith("On this data, augmented did not improve the recall of D: 0.470 ")
    assert "against 0.420 [" in still and "for default, means of 3 seeds each" in still
    assert "difference +0.050 (paired t-test over 3 paired runs, p = 0.400)" in still
    assert "not distinguishable from noise" in still
    assert better.startswith("On this data, gan improved the recall of D: 0.720")
    assert "p = 0.001), distinguishable from noise" in better
    worse = answer(found, [paired("augmented", -0.3, 0.001)]).sentences[0]
    assert "augmented lowered the recall of D" in worse
    at_level = answer(found, [paired("augmented", 0.3, 0.05)]).sentences[0]  # not below 0.05
    assert "augmented did not improve" in at_level and "not distinguishable" in at_level


@pytest.mark.parametrize("added", [0, 40])
def test_an_offline_augmenter_that_added_no_image_is_named_in_the_verdict(tmp_path, added):
    """A DCGAN that trained no generator (too few images of every class) leaves its
    variant's runs the baseline's: the answer says so beside the verdict."""
    import json

    found = runs({"default": 0.40, "gan": 0.45}, seeds=1)
    for run, augment in zip(found, ([], [{"name": "dcgan"}]), strict=True):
        folder = tmp_path / run.label
        folder.mkdir()
        whole = {"data": {"dataset": "phantom"}, "model": {"name": "cnn"}}
        (folder / "config.json").write_text(json.dumps({**whole, "augment": augment}))
        report = {"extra_train_images": {"dcgan": added}} if augment and added else {}
        (folder / "data.json").write_text(json.dumps(report))
        if augment:
            (folder / "augment" / "0-dcgan").mkdir(parents=True)
        run.directory = folder
    (sentence,) = answer(found, [paired("gan", 0.05, 0.4, seeds=1)]).sentences
    assert ("but dcgan added no training image" in sentence) == (added == 0), sentence
    assert "gan (dcgan augmentation" in sentence


def test_no_verdict_where_a_run_did_not_learn():
    found = runs({"default": 0.4, "augmented": 0.5}, not_learned="augmented-seed1")
    test = paired("augmented", 0.3, 0.001)
    test.not_learned = {"augmented-seed1": "did not learn: ..."}
    (sentence,) = answer(found, [test]).sentences
    assert sentence.startswith("On this data, no verdict on augmented against default: 1 of")
    assert "did not learn (augmented-seed1)" in sentence and "improved" not in sentence


def test_the_answer_table_has_the_f1_and_recall_of_d_and_the_runs_that_learned():
    found = runs({"default": 0.4, "augmented": 0.5}, not_learned="augmented-seed2")
    table = answer(found, [paired("augmented", 0.1, 0.5)]).table
    assert list(table.columns[:2]) == ["variant", "learned"]
    assert {"F1 of D", "recall of D", "recall of D_low", "recall of D_high"} <= set(table.columns)
    assert list(table["learned"]) == ["3 of 3 runs", "2 of 3 runs"]
    assert table["recall of D"].tolist() == pytest.approx([0.42, 0.52])
    # the interval of the mean over seeds: a t-interval on the logit scale, mapped back
    seeds = logit(0.4 + np.array(SEED_OFFSETS))
    sem = seeds.std(ddof=1) / np.sqrt(len(seeds))
    low, high = expit(t.interval(0.95, len(seeds) - 1, loc=seeds.mean(), scale=sem))
    assert table["recall of D_low"].iloc[0] == pytest.approx(low)
    assert table["recall of D_high"].iloc[0] == pytest.approx(high)


def test_a_single_variant_is_described_without_a_comparison():
    (sentence,) = answer(runs({"default": 0.4}), []).sentences
    assert sentence.startswith("On this data, default: F1 of D 0.5")
    assert "recall of D 0.420 [" in sentence and "learned: 3 of 3 runs" in sentence


# -- the tables as shown --------------------------------------------------------------------


def test_the_results_table_shows_counts_words_and_no_duplicate():
    found = runs({"default": 0.4, "augmented": 0.5}, seeds=2)
    shown = shown_table(comparison_table(found, resamples=0), found)
    assert "best_epoch" not in shown and "checkpoint_epoch" not in shown  # one column says it
    assert shown["checkpoint"].iloc[0] == "best (epoch 3)"
    assert shown["epochs"].iloc[0] == 3 and isinstance(shown["epochs"].iloc[0], int)
    assert shown["learned"].iloc[0] == "yes" and "accuracy" in shown
    found[0].metrics.checkpoint, found[0].metrics.checkpoint_epoch = "last", 3
    found[0].metrics.best.epoch = 2
    assert "best_epoch" in shown_table(comparison_table(found, resamples=0), found)


def write(tmp_path: Path, found: list[RunSummary]) -> tuple[str, str]:
    write_report(
        tmp_path,
        title="quickstart",
        description="Normal vs Diabetes",
        runs=found,
        figures={},
        metrics=["f1_D", "recall_D", "f1_micro", "auc_macro"],
        resamples=50,
    )
    return (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()


def test_an_interrupted_run_says_so_before_its_answer(tmp_path):
    found = runs({"default": 0.40, "augmented": 0.45}, seeds=1)
    write_report(
        tmp_path,
        title="quickstart",
        description="",
        runs=found,
        figures={},
        metrics=["f1_D", "recall_D"],
        resamples=50,
        unfinished=["gan-seed0: stopped after epoch 2; continue with odirkit run --resume x"],
    )
    markdown = (tmp_path / "report.md").read_text()
    answer = markdown.split("## The answer", 1)[1].strip().splitlines()[0]
    assert (
        answer == "Not every run finished (gan-seed0): this answer covers the finished runs only."
    )
    assert "gan-seed0" in json.loads((tmp_path / "comparison.json").read_text())["answer"][0]


def test_the_report_opens_with_the_answer_and_shows_no_python_values(tmp_path):
    markdown, page = write(tmp_path, runs({"default": 0.4, "augmented": 0.5}, seeds=2))
    assert markdown.index("## The answer") < markdown.index("## Did each run learn?")
    assert "| variant | learned | F1 of D | recall of D |" in markdown
    assert page.index('id="answer"') < page.index('id="learning"') < page.index('id="results"')
    text = re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", page))
    for python in ("None", "{}", "True", "False", "nan", "3.000"):
        assert not re.search(rf"(?<![\w.]){re.escape(python)}(?![\w.])", text), python
    assert json.loads((tmp_path / "comparison.json").read_text())["answer"]


def test_every_figure_has_a_caption_and_every_table_a_box(tmp_path):
    _, page = write(tmp_path, runs({"default": 0.4, "augmented": 0.5}, seeds=2))
    images = re.findall(r"<img[^>]*>", page)
    figures = re.findall(r"<figure><img[^>]*><figcaption>([^<]+)</figcaption></figure>", page)
    assert len(images) == len(figures) >= 2 and all(c.strip() for c in figures)
    tables = page.count("<table")
    assert tables == page.count('<div class="scroll"><table') >= 2
    means = re.findall(r'<tr class="mean" style="background:(#[0-9a-f]{6})26">', page)
    assert means == ["#1f77b4", "#ff7f0e"]  # each variant's own colour


def test_the_curves_are_one_line_per_variant_with_a_band_over_its_seeds(tmp_path, monkeypatch):
    import odirkit.report.plots

    drawn = []
    monkeypatch.setattr(odirkit.report.plots, "save_figure", lambda fig, path: drawn.append(fig))
    found = runs({"default": 0.4, "augmented": 0.5, "gan": 0.6})
    assert odirkit.report.plot_comparison(found, tmp_path / "c.png", "quickstart")
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "F1 of D (Diabetes)",
        "recall of D (Diabetes)",
        "accuracy",
    ]
    for ax in panels:
        assert len(ax.get_lines()) == len(VARIANTS)  # not one per run
        assert len(ax.collections) == len(VARIANTS)  # a band each
        assert ax.get_legend() is None  # the legend sits below the panels
    (legend,) = fig.legends
    assert [t.get_text().split(" ")[0] for t in legend.get_texts()] == list(VARIANTS)
    colours = [tuple(line.get_color()) for line in panels[0].get_lines()]
    assert len(set(colours)) == len(VARIANTS)


def test_the_recall_legend_covers_no_bar(tmp_path, monkeypatch):
    import odirkit.report.plots

    drawn = []
    monkeypatch.setattr(odirkit.report.plots, "save_figure", lambda fig, path: drawn.append(fig))
    found = runs({"default": 0.4, "augmented": 0.5, "gan": 0.6})
    table = comparison_table(found, resamples=0)
    odirkit.report.plot_recall_per_class(found, tmp_path / "r.png", "quickstart", table)
    (fig,) = drawn
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 < ax.get_window_extent().y0  # below the axes, not over the bars
    assert len(ax.patches) == 2 * len(VARIANTS)  # a bar per variant and class


# -- each variant's section -----------------------------------------------------------------


def test_the_operating_point_is_said_in_words():
    from odirkit.report import operating_point

    metrics = summary("default", 0.4).metrics
    text = operating_point(metrics)
    assert "{}" not in text and "None" not in text and "No temperature scaling" in text
    assert text.startswith("Reported checkpoint: best (epoch 3). Operating point: a fixed")
    metrics.final.threshold_rule = "sensitivity:0.9"
    metrics.final.thresholds = {"D": 0.4321}
    metrics.final.temperature = 1.25
    text = operating_point(metrics)
    assert "by sensitivity:0.9; thresholds D 0.432" in text and "temperature of 1.250" in text


def test_localisation_is_read_against_its_random_baseline():
    from odirkit.report import localisation_reading

    row = {
        "explainer": "gradcam",
        "label": "D",
        "images": 12,
        "pointing_game": 0.25,
        "random_point": 0.05,
        "energy_in_mask": 0.03,
        "uniform_map": 0.01,
        "reliable": True,
    }
    text = localisation_reading(row)
    assert text.startswith("gradcam on D (12 images): its map's peak fell on a lesion in 25%")
    assert "against 5% for a random point of the field of view, 5.0 times chance" in text
    assert "3.0% of its importance lay on the lesions, against 1.0% for a flat map" in text
    low = localisation_reading({**row, "pointing_game": 0.04, "images": 4, "reliable": False})
    assert "no better than chance" in low and "Few images" in low and "sanity check" in low


def png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_augmenter_figures_are_captioned_in_order_with_their_notes(tmp_path):
    from odirkit.report.html import _augmenters
    from odirkit.runs import VariantDirectory

    folder = tmp_path / "gan-seed0" / "augment" / "0-dcgan"
    for name in ("samples_epoch_040.png", "samples_epoch_010.png", "losses.png"):
        png(folder / "N" / name)
    from odirkit_augment.dcgan import DCGAN

    gan = DCGAN(
        epochs=40,
        batch_size=16,
        width=16,
        gan_size=32,
        lr=2e-4,
        beta1=0.5,
        real_label=0.9,
        images_per_class=None,
        ratio=0.5,
        classes=None,
        min_images=64,
        sample_epochs=[10, 40],
    )
    figures = gan.figures_of("N", folder / "N")
    assert [f["file"] for f in figures] == [
        "N/samples_epoch_010.png",
        "N/samples_epoch_040.png",
        "N/losses.png",
    ]
    assert figures[0]["caption"].startswith("N (Normal): the generator's samples after epoch 10")
    note = "The GAN of N did not converge: ..."
    (folder / "report.json").write_text(json.dumps({"figures": figures, "notes": [note]}))
    whole = {"data": {"dataset": "phantom"}, "model": {"name": "cnn"}}
    (tmp_path / "gan-seed0" / "config.json").write_text(json.dumps(whole))
    page = _augmenters(VariantDirectory(tmp_path / "gan-seed0"))
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    assert [c.split(":")[0] for c in captions] == ["N (Normal)"] * 3
    assert "epoch 10 of 40" in captions[0] and "epoch 40 of 40" in captions[1]
    assert '<p class="flag">The GAN of N did not converge' in page


def test_a_gan_whose_generator_loses_is_said_not_to_converge():
    from odirkit_augment.dcgan import convergence_note

    epochs = np.arange(1, 41)
    climbing = pd.DataFrame(
        {"epoch": epochs, "loss_g": np.linspace(1.0, 4.5, 40), "loss_d": np.full(40, 0.4)}
    )
    note = convergence_note(climbing, "D")
    assert note is not None and note.startswith("The GAN of D did not converge")
    assert "climbed from 1.13 to 4.37" in note and "ended at 0.40" in note
    balanced = climbing.assign(loss_g=np.full(40, 0.8), loss_d=np.full(40, 1.3))
    assert convergence_note(balanced, "D") is None


def test_a_gan_that_draws_flat_squares_is_said_not_to_converge():
    """Losses can look calm while an undertrained generator draws near-uniform grey."""
    import torch
    from odirkit_augment.dcgan import flatness_note

    g = torch.Generator().manual_seed(0)
    photographs = torch.rand(8, 3, 16, 16, generator=g)  # spread about 0.29 per image
    grey = 0.5 + 0.02 * torch.rand(8, 3, 16, 16, generator=g)
    note = flatness_note(grey, photographs, "N")
    assert note is not None and note.startswith("The GAN of N did not converge")
    assert flatness_note(photographs.flip(0), photographs, "N") is None
    faint = 0.5 + 0.4 * (photographs - 0.5)  # 40% of the detail: still images
    assert flatness_note(faint, photographs, "N") is None


def test_the_explanation_grid_shows_the_prediction_and_a_colour_bar(tmp_path, monkeypatch):
    import torch

    import odirkit.figures
    from odirkit.explain import ExplainInputs, Explanations, ImageClass, save_grid

    drawn = []
    monkeypatch.setattr(odirkit.figures, "save_figure", lambda fig, path: drawn.append(fig))
    inputs = ExplainInputs(
        images=torch.zeros(2, 3, 16, 16, dtype=torch.uint8),
        rows=pd.DataFrame({"patient_id": ["1", "2"], "eye": ["left", "left"], "path": ["", ""]}),
        true=[[0], [1]],
    )
    result = Explanations(
        [ImageClass(0, 0, shown=True, example=True), ImageClass(1, 1, True, False, True)]
    )
    result.maps = {"gradcam": np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)}
    result.probabilities = np.array([[0.9, 0.1], [0.27, 0.73]], dtype=np.float32)
    result.predicted = [[0], [1]]
    save_grid(tmp_path / "grid.png", inputs, result, ["N", "D"], ["gradcam"])
    (fig,) = drawn
    texts = [ax.get_xlabel() for ax in fig.axes] + [ax.get_title() for ax in fig.axes]
    assert "predicted N (p = 0.90)" in texts and "predicted D (p = 0.73)" in texts
    assert "true: D (Diabetes)" in texts and "gradcam: map for D" in texts
    (bar,) = [ax for ax in fig.axes if ax.get_ylabel().startswith("importance")]
    assert [t.get_text() for t in bar.get_yticklabels()][::2] == ["low", "high"]


def test_an_external_result_says_how_many_images_it_left_out_and_why():
    from odirkit.external_report import _heading, left_out
    from odirkit.runs.records import ExternalMetrics

    summary = ExternalMetrics.model_validate(
        {
            "final": {},
            "name": "rfmid",
            "labels": ["N", "D"],
            "labels_scored": ["N", "D"],
            "collection": {"dataset": "table", "root": "data/rfmid"},
            "images": 19,
            "patients": 19,
            "data": {
                "dropped_without_label": 11,
                "dropped_with_several_labels": 2,
                "skipped_unreadable": 0,
                "dataset": {"scored": "every image"},
            },
        }
    )
    _, text = _heading("default", summary)
    assert (
        "Images left out: 11 with none of the run's labels (N, D); 2 with several of them" in text
    )
    summary.data.dropped_without_label = summary.data.dropped_with_several_labels = 0
    assert left_out(summary) == "" and "left out" not in _heading("default", summary)[1]
