"""Running explainer plugins: maps, overlays, grids, localisation scores, sanity checks.

For a trained model and a set of images, every explainer computes one map per
(image, class) pair, batched:

- the class asked for (``--label``), else the predicted class (single-label)
  or each predicted label (multi-label) — the maps drawn over the fundus;
- for images with lesion masks (the phantom), each true label with a mask —
  the maps scored against the lesion: the **pointing game** (the map's
  maximum falls inside the mask dilated by a small tolerance) and the share
  of the map's **energy inside the mask**, averaged per explainer and class,
  beside what a uniform random point in the field of view would score;
- two **sanity checks** (Adebayo et al. 2018), each a Spearman rank
  correlation computed inside the field of view (the black border every
  fundus shares would agree in any two maps): the **model-randomisation
  check**, between the maps of the trained model and of the same architecture
  re-initialised, and the **input-dependence check**, between the maps of
  images of different classes. A faithful explainer's maps change with the
  model and with the image, so both correlations are low; an explainer above
  ``SANITY_LIMIT`` (0.5) in either is *flagged*: the console and the report
  say so, and its localisation scores are marked unreliable.

A model with extra inputs (age and sex, ``[model] metadata = true``) is
explained as a function of the image, its extra inputs held: they reach the
explainer as Captum's ``additional_forward_args``. A transformer's CAM layer
reaches a layer-based explainer as the patch grid its model's ``cam_reshape``
rule makes of the tokens (:func:`odirkit.layers.explained_layer`), for the
trained and the re-initialised model alike. An explainer that declares it
cannot explain the model (meta ``applies_to``) raises
:class:`~odirkit.errors.NotApplicable`, or is left out with a warning when no
explainer was asked for by name.

Written to an ``explain/`` folder: ``maps.npz`` (the raw maps), overlays
(green through red by importance), ``grid.png`` (an example per class, a
column per explainer), ``localisation.csv`` and ``sanity.csv``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.config import ExplainOptions, PluginCall
from odirkit.console import progress_bar, warn
from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import FOV_THRESHOLD, IMAGE_SUFFIXES, preprocess_mask
from odirkit.data.pairs import BOTH, LEFT_ONLY
from odirkit.engine.rundir import VariantDirectory
from odirkit.errors import ConfigError, DataError, NotApplicable, PluginError, RunError
from odirkit.eyes import LEFT, RIGHT, OneEye
from odirkit.files import write_bytes, write_json, write_text
from odirkit.layers import explained_layer, not_applicable
from odirkit.params import Where
from odirkit.plugins import Registry
from odirkit.seeding import derive_seed
from odirkit.view import ModelView

EXPLAIN_BATCH = 16
SANITY_PAIRS = 16
INPUT_PAIRS = 64  # pairs of images of different classes for the input-dependence check
#: a rank correlation above this fails a sanity check (Adebayo et al. 2018 report
#: near-zero correlations for faithful maps after randomisation)
SANITY_LIMIT = 0.5
POINTING_TOLERANCE = 0.03  # of the image side: 15 px at 512


@dataclass
class ExplainInputs:
    """Images to explain and what is known of them."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    rows: pd.DataFrame  # patient_id, eye, path (and, when known, image_path, mask_path_<L>)
    true: list[list[int]]  # per image: the true class indices (empty when unknown)
    extra: tuple[torch.Tensor, ...] = ()  # the model's other inputs per image (age, sex)
    # a both-eyes model: each photograph's other eye (uint8 [N, 3, S, S]; itself when the
    # patient has one) and its side (0 left, 1 right)
    partners: torch.Tensor | None = None
    sides: torch.Tensor | None = None


@dataclass
class Pair:
    """One (image, class) to explain, and why."""

    image: int
    target: int
    shown: bool = False  # drawn as an overlay
    lesion: bool = False  # scored against a lesion mask
    example: bool = False  # the grid's example of its class


@dataclass
class Explanations:
    """The maps of every explainer for every pair, and the scores."""

    pairs: list[Pair]
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 [P, S, S]
    localisation: pd.DataFrame | None = None
    sanity: pd.DataFrame | None = None
    # the model's probabilities per image (float32 [N, C]: the view's softmax or sigmoid,
    # with its temperature) and its predicted classes, shown on the grid
    probabilities: np.ndarray | None = None
    predicted: list[list[int]] | None = None

    def flagged(self) -> list[str]:
        """One sentence per explainer that failed a sanity check, and per explainer and
        class whose localisation is no better than chance."""
        return self._sanity_flags() + self._chance_flags()

    def _chance_flags(self) -> list[str]:
        """Localisation at or below its random baseline: the maps' peaks fall on a lesion
        no more often than a random point of the field of view does (or their energy in
        the lesions is no more than a uniform map's): the model does not look there."""
        if self.localisation is None or self.localisation.empty:
            return []
        lines = []
        for row in self.localisation.to_dict("records"):
            pointing, chance = row.get("pointing_game"), row.get("random_point")
            energy, uniform = row.get("energy_in_mask"), row.get("uniform_map")
            below = []
            if pointing is not None and chance is not None and pointing <= chance:
                below.append(
                    f"its peak falls on a lesion in {pointing:.3f} of the images, no more "
                    f"often than a random point of the field of view ({chance:.3f})"
                )
            if energy is not None and uniform is not None and energy <= uniform:
                below.append(
                    f"its share of map energy on the lesions ({energy:.3f}) is no more than a "
                    f"uniform map's ({uniform:.3f})"
                )
            if below:
                lines.append(
                    f"{row['explainer']} on {row['label']} is no better than chance: "
                    f"{'; '.join(below)}: the model's evidence is not on the lesions"
                )
        return lines

    def _sanity_flags(self) -> list[str]:
        if self.sanity is None:
            return []
        lines = []
        for row in self.sanity.to_dict("records"):
            failed = []
            if row["fails_randomisation"]:
                failed.append(
                    f"its maps barely change when the model is re-initialised (rank "
                    f"correlation {row['rank_correlation_with_random_model']:.2f})"
                )
            if row["fails_input_dependence"]:
                failed.append(
                    f"its maps barely change from image to image (rank correlation "
                    f"{row['input_dependence']:.2f} across classes)"
                )
            if failed:
                lines.append(
                    f"{row['explainer']} fails its sanity checks: {'; '.join(failed)} "
                    f"(limit {SANITY_LIMIT}); its localisation scores are unreliable"
                )
        return lines


# -- computing maps ------------------------------------------------------------------------


def predicted_targets(
    model: nn.Module, x: torch.Tensor, single_label: bool, extra: tuple[torch.Tensor, ...] = ()
) -> list[list[int]]:
    """The predicted class (single-label) or every label above 0.5 (multi-label; at
    least the most probable one)."""
    with torch.no_grad():
        logits = model(x, *extra)
    return targets_of_logits(logits, single_label)


def targets_of_logits(logits: torch.Tensor, single_label: bool) -> list[list[int]]:
    """:func:`predicted_targets` from logits ``[N, C]`` already computed."""
    if single_label:
        return [[int(i)] for i in logits.argmax(1).tolist()]
    probs = logits.sigmoid()
    return [
        [int(i) for i in torch.nonzero(p > 0.5).flatten().tolist()] or [int(p.argmax())]
        for p in probs
    ]


def compute_maps(
    explainer: Callable[..., torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    pairs: Sequence[Pair],
    layer: nn.Module | None,
    *,
    seed: int,
    extra: tuple[torch.Tensor, ...] = (),
    batch_size: int = EXPLAIN_BATCH,
    progress: Callable[[int], None] | None = None,
    name: str = "explainer",
) -> np.ndarray:
    """``float32 [P, S, S]``: the explainer's map for each pair, in batches.

    The model's extra inputs, if any, are passed as ``additional_forward_args``
    (held fixed while the image is explained).
    """
    maps = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        index = torch.tensor([p.image for p in chunk], device=x.device)
        targets = torch.tensor([p.target for p in chunk], device=x.device)
        torch.manual_seed(derive_seed(seed, start))  # SmoothGrad's noise repeats exactly
        if extra:
            held = tuple(t[index.cpu()].to(x.device) for t in extra)
            try:
                result = explainer(model, x[index], targets, layer, additional_forward_args=held)
            except TypeError as exc:
                if "additional_forward_args" not in str(exc):
                    raise
                raise PluginError(
                    f"explainer {name!r} takes no additional_forward_args, so it cannot explain "
                    "a model with extra inputs ([model] metadata = true)"
                ) from None
        else:
            result = explainer(model, x[index], targets, layer)
        if not isinstance(result, torch.Tensor) or result.shape != (len(chunk), *x.shape[-2:]):
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result)
            raise PluginError(
                f"explainer {name!r} returned {shape}; expected [B, H, W] maps at the input size"
            )
        maps.append(result.detach().float().clamp_min(0).cpu().numpy())
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(maps) if maps else np.zeros((0, *x.shape[-2:]), np.float32)


# -- scores -------------------------------------------------------------------------------


def pointing_and_energy(
    heat: np.ndarray, mask: np.ndarray, fov: np.ndarray, tolerance: int
) -> tuple[float, float, float, float]:
    """For one map: whether its maximum hits the (dilated) mask, the share of its energy
    inside the mask, and what a uniform random point and a uniform map would score."""
    from scipy.ndimage import binary_dilation

    grown = binary_dilation(mask, iterations=tolerance) if tolerance else mask
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    total = float(heat.sum())
    energy = float(heat[mask].sum()) / total if total > 0 else 0.0
    field = max(float(fov.sum()), 1.0)
    chance = float((grown & fov).sum()) / field
    share = float((mask & fov).sum()) / field
    return float(grown[y, x]), energy, chance, share


def rank_correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Spearman's rank correlation of two maps, on a 56x56 grid (for speed), over the cells
    mostly inside ``region`` (the field of view) when it is given."""
    from scipy.stats import spearmanr

    def small(m: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None]
        return torch.nn.functional.adaptive_avg_pool2d(t, 56).flatten().numpy()

    x, y = small(a), small(b)
    if region is not None:
        inside = small(region.astype(np.float32)) > 0.5
        x, y = x[inside], y[inside]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def input_dependence(
    maps: np.ndarray, pairs: Sequence[Pair], classes: Sequence[int], fovs: Sequence[np.ndarray]
) -> float:
    """Mean rank correlation between the maps of images of different classes (high: the
    maps hardly depend on the image)."""
    shown = [(i, p) for i, p in enumerate(pairs) if p.shown]
    scores = []
    for (i, a), (j, b) in itertools.combinations(shown, 2):
        if a.image == b.image or classes[a.image] == classes[b.image]:
            continue
        scores.append(rank_correlation(maps[i], maps[j], fovs[a.image] & fovs[b.image]))
        if len(scores) >= INPUT_PAIRS:
            break
    valid = [v for v in scores if not math.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


# -- drawing --------------------------------------------------------------------------------


#: the maps' colours, low to high importance
HEAT = ("#1a9641", "#ffff33", "#d7191c")


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Importance in [0, 1] -> RGB in [0, 1], green through yellow to red."""
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("odirkit", list(HEAT))
    return cmap(heat)[..., :3]


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A map drawn over a fundus image (``uint8 [H, W, 3]``), more opaque where it matters."""
    top = float(np.percentile(heat, 99.5)) or float(heat.max()) or 1.0
    level = np.clip(heat / top, 0.0, 1.0)
    alpha = (0.15 + 0.6 * level)[..., None]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * heat_colours(level)
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(
    path: Path,
    inputs: ExplainInputs,
    result: Explanations,
    labels: Sequence[str],
    names: Sequence[str],
    view: ModelView | None = None,
) -> None:
    """One row per class (its example image), the image then one column per explainer;
    under each image its true class and the model's prediction with its probability,
    over each map the class it explains; the lesion's outline drawn over each where the
    image has a lesion mask; a colour bar for the maps' importance."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    from odirkit.figures import save_figure
    from odirkit.labels import LABEL_NAMES

    examples = sorted(
        ((i, p) for i, p in enumerate(result.pairs) if p.example), key=lambda item: item[1].target
    )
    if not examples:
        return
    columns = 1 + len(names)
    fig, axes = plt.subplots(
        len(examples),
        columns,
        figsize=(2.6 * columns + 0.8, 2.9 * len(examples)),
        squeeze=False,
    )
    for row, (i, pair) in enumerate(examples):
        image = inputs.images[pair.image].permute(1, 2, 0).numpy()
        axes[row][0].imshow(image)
        label = labels[pair.target]
        axes[row][0].set_title(f"true: {label} ({LABEL_NAMES.get(label, label)})", fontsize=8)
        axes[row][0].set_xlabel(_prediction(result, pair.image, labels), fontsize=8)
        mask = _lesion_mask(inputs, pair.image, label, view)
        for col, name in enumerate(names, start=1):
            axes[row][col].imshow(overlay(image, result.maps[name][i]))
            axes[row][col].set_title(f"{name}: map for {label}", fontsize=8)
        if mask is not None and mask.any():
            for ax in axes[row]:
                ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout(h_pad=1.5)
    cmap = LinearSegmentedColormap.from_list("odirkit", list(HEAT))
    bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0, 1), cmap=cmap),
        ax=axes[:, 1:].ravel().tolist() if len(names) else axes.ravel().tolist(),
        fraction=0.025,
        pad=0.02,
    )
    bar.set_ticks([0, 0.5, 1], labels=["low", "", "high"])
    bar.set_label("importance (share of the map's top)", fontsize=8)
    save_figure(fig, path)


def _prediction(result: Explanations, image: int, labels: Sequence[str]) -> str:
    """ "predicted D, p = 0.73" for an image (empty when the model's answers are unknown)."""
    if result.probabilities is None or result.predicted is None:
        return ""
    chosen = result.predicted[image]
    probs = result.probabilities[image]
    return "predicted " + ", ".join(f"{labels[c]} (p = {probs[c]:.2f})" for c in chosen)


def _lesion_mask(
    inputs: ExplainInputs, image: int, label: str, view: ModelView | None
) -> np.ndarray | None:
    """The image's lesion mask for ``label`` in the image's frame, when there is one."""
    column = f"mask_path_{label}"
    if view is None or column not in inputs.rows.columns or "image_path" not in inputs.rows:
        return None
    row = inputs.rows.iloc[image]
    if not isinstance(row[column], str) or not row[column]:
        return None
    return preprocess_mask(row[column], row["image_path"], view.preprocessing)


# -- the whole thing ----------------------------------------------------------------------


def choose_pairs(
    inputs: ExplainInputs,
    predicted: list[list[int]],
    labels: Sequence[str],
    asked: Sequence[int] | None,
    max_images: int,
) -> list[Pair]:
    """The (image, class) pairs to explain; see the module's documentation."""
    pairs: dict[tuple[int, int], Pair] = {}

    def add(image: int, target: int, **flags: bool) -> None:
        pair = pairs.setdefault((image, target), Pair(image, target))
        for key, value in flags.items():
            setattr(pair, key, getattr(pair, key) or value)

    count = min(max_images, len(inputs.images))
    for image in range(count):
        for target in asked if asked else predicted[image]:
            add(image, target, shown=True)
        for target in inputs.true[image]:
            column = f"mask_path_{labels[target]}"
            if (
                column in inputs.rows.columns
                and isinstance(inputs.rows[column].iloc[image], str)
                and inputs.rows[column].iloc[image]
            ):
                add(image, target, lesion=True)
    for target in asked if asked else range(len(labels)):
        for image in range(count):
            if target in inputs.true[image] or (not any(inputs.true) and image == 0):
                add(image, target, example=True, shown=True)
                break
    return sorted(pairs.values(), key=lambda p: (p.image, p.target))


def explain(
    *,
    model: nn.Module,
    view: ModelView,
    calls: Sequence[PluginCall],
    inputs: ExplainInputs,
    device: torch.device,
    out_dir: Path,
    seed: int,
    random_model: Callable[[], nn.Module] | None = None,
    asked: Sequence[int] | None = None,
    layer_override: str | None = None,
    skip_inapplicable: bool = False,
) -> Explanations:
    """Run ``calls`` (explainer plugins) on ``inputs``; write everything to ``out_dir``.

    An explainer that declares it cannot apply to ``model`` (meta ``applies_to``) raises
    :class:`NotApplicable`, or with ``skip_inapplicable`` is left out with a warning.
    """
    model = model.to(device).eval()
    labels = view.labels
    x = view.normalise(inputs.images, device)
    meta = tuple(t.to(device) for t in inputs.extra)

    def runner(net: nn.Module) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """What the explainers call, and its extra inputs: a both-eyes model explains one
        photograph with its other eye held fixed (odirkit.eyes.OneEye)."""
        if view.eyes != 2:
            return net, meta
        if inputs.partners is None or inputs.sides is None:
            raise RunError("a both-eyes model needs each photograph's other eye to explain it")
        one = OneEye(net)
        other = one.features(view.normalise(inputs.partners, device))
        return one, (other, inputs.sides.to(device), *meta)

    explained, extra = runner(model)
    with torch.no_grad():
        logits = explained(x, *extra)
    predicted = targets_of_logits(logits, view.single_label)
    classes = [t[0] if t else p[0] for t, p in zip(inputs.true, predicted, strict=True)]
    fovs = [(image.float().mean(0) > FOV_THRESHOLD).numpy() for image in inputs.images]
    max_images = max((c.options.get("max_images", 64) for c in calls), default=64)
    pairs = choose_pairs(inputs, predicted, labels, asked, max_images)
    result = Explanations(pairs)
    result.probabilities = view.probabilities(logits).cpu().numpy()
    result.predicted = predicted
    names = []
    with progress_bar() as bar:
        for call in calls:
            reason = not_applicable(call.spec.meta.get("applies_to"), model)
            if reason:
                message = f"explainer {call.name!r} cannot explain this model: {reason}"
                if not skip_inapplicable:
                    raise NotApplicable(message)
                warn(f"{message}; left out")
                continue
            explainer = call.build()
            needs_layer = call.spec.meta.get("needs_layer", True)
            layer_name = None
            with contextlib.ExitStack() as hooks:
                layer = None
                if needs_layer:
                    choice = layer_override or call.options.get("layer", "default")
                    layer_name, layer = hooks.enter_context(
                        explained_layer(model, choice, view.cam_layer, view.cam_reshape)
                    )
                task = bar.add_task(f"explain {call.name}", total=len(pairs), status="")
                result.maps[call.name] = compute_maps(
                    explainer,
                    explained,
                    x,
                    pairs,
                    layer,
                    seed=seed,
                    extra=extra,
                    progress=lambda n, t=task: bar.advance(t, n),
                    name=call.name,
                )
            names.append(call.name)
            if call.options.get("sanity", True):
                result.sanity = pd.concat(
                    [
                        result.sanity if result.sanity is not None else pd.DataFrame(),
                        _sanity(
                            call,
                            explainer,
                            random_model,
                            runner,
                            x,
                            pairs,
                            layer_name,
                            seed,
                            result.maps[call.name],
                            device,
                            classes,
                            fovs,
                            view.cam_reshape,
                        ),
                    ],
                    ignore_index=True,
                )
    result.localisation = _localisation(inputs, result, labels, view)
    if result.localisation is not None and result.sanity is not None:
        reliable = dict(zip(result.sanity["explainer"], result.sanity["reliable"], strict=True))
        result.localisation["reliable"] = [
            bool(reliable.get(name, True)) for name in result.localisation["explainer"]
        ]
    _write(out_dir, inputs, result, labels, names, view)
    return result


def _sanity(
    call: PluginCall,
    explainer: Any,
    random_model: Callable[[], nn.Module] | None,
    runner: Callable[[nn.Module], tuple[nn.Module, tuple[torch.Tensor, ...]]],
    x: torch.Tensor,
    pairs: list[Pair],
    layer_name: str | None,
    seed: int,
    trained: np.ndarray,
    device: torch.device,
    classes: Sequence[int],
    fovs: Sequence[np.ndarray],
    reshape: str | None = None,
) -> pd.DataFrame:
    """Both sanity checks for one explainer, and the verdict."""
    randomisation, constant = float("nan"), 0
    subset = pairs[:SANITY_PAIRS]
    if random_model is not None:
        fresh = random_model().to(device).eval()
        explained, extra = runner(fresh)
        with contextlib.ExitStack() as hooks:
            layer = None
            if layer_name:
                _, layer = hooks.enter_context(explained_layer(fresh, layer_name, None, reshape))
            randomised = compute_maps(
                explainer, explained, x, subset, layer, seed=seed, extra=extra, name=call.name
            )
        scores = [
            rank_correlation(trained[i], randomised[i], fovs[p.image]) for i, p in enumerate(subset)
        ]
        valid = [v for v in scores if not math.isnan(v)]
        randomisation = float(np.mean(valid)) if valid else float("nan")
        constant = len(scores) - len(valid)
    dependence = input_dependence(trained, pairs, classes, fovs)
    fails_randomisation = bool(randomisation > SANITY_LIMIT)
    fails_input = bool(dependence > SANITY_LIMIT)
    return pd.DataFrame(
        [
            {
                "explainer": call.name,
                "pairs": len(subset),
                "rank_correlation_with_random_model": randomisation,
                "constant_maps": constant,
                "input_dependence": dependence,
                "fails_randomisation": fails_randomisation,
                "fails_input_dependence": fails_input,
                "reliable": not (fails_randomisation or fails_input),
            }
        ]
    )


def _localisation(
    inputs: ExplainInputs, result: Explanations, labels: Sequence[str], view: ModelView
) -> pd.DataFrame | None:
    lesion = [(i, p) for i, p in enumerate(result.pairs) if p.lesion]
    if not lesion or "image_path" not in inputs.rows.columns:
        return None
    prep = view.preprocessing
    tolerance = max(1, round(POINTING_TOLERANCE * prep.size))
    masks, fovs = {}, {}
    for _, pair in lesion:
        row = inputs.rows.iloc[pair.image]
        label = labels[pair.target]
        masks[(pair.image, pair.target)] = preprocess_mask(
            row[f"mask_path_{label}"], row["image_path"], prep
        )
        gray = inputs.images[pair.image].float().mean(0).numpy()
        fovs[pair.image] = gray > FOV_THRESHOLD
    records = []
    for name, maps in result.maps.items():
        for i, pair in lesion:
            mask = masks[(pair.image, pair.target)]
            if not mask.any():
                continue
            hit, energy, chance, share = pointing_and_energy(
                maps[i], mask, fovs[pair.image], tolerance
            )
            records.append(
                {
                    "explainer": name,
                    "label": labels[pair.target],
                    "hit": hit,
                    "energy": energy,
                    "chance": chance,
                    "share": share,
                }
            )
    if not records:
        return None
    frame = pd.DataFrame(records)
    table = (
        frame.groupby(["explainer", "label"], sort=False)
        .agg(
            images=("hit", "size"),
            pointing_game=("hit", "mean"),
            random_point=("chance", "mean"),
            energy_in_mask=("energy", "mean"),
            uniform_map=("share", "mean"),
        )
        .reset_index()
    )
    return table


def _write(
    out_dir: Path,
    inputs: ExplainInputs,
    result: Explanations,
    labels: Sequence[str],
    names: Sequence[str],
    view: ModelView | None = None,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {name: maps.astype(np.float16) for name, maps in result.maps.items()}
    # strings as fixed-width unicode, so np.load needs no allow_pickle
    arrays["image"] = np.array([p.image for p in result.pairs], dtype=np.int64)
    arrays["target"] = np.array([labels[p.target] for p in result.pairs], dtype=str)
    images = arrays["image"]
    arrays["patient_id"] = np.array(inputs.rows["patient_id"].astype(str).tolist(), dtype=str)[
        images
    ]
    arrays["eye"] = np.array(inputs.rows["eye"].astype(str).tolist(), dtype=str)[images]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(out_dir / "maps.npz", buffer.getvalue())
    for name in names:
        folder = out_dir / "overlays" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, pair in enumerate(result.pairs):
            if not pair.shown:
                continue
            row = inputs.rows.iloc[pair.image]
            image = inputs.images[pair.image].permute(1, 2, 0).numpy()
            data = _png(overlay(image, result.maps[name][i]))
            target = folder / f"{row['patient_id']}_{row['eye']}_{labels[pair.target]}.png"
            write_bytes(target, data)
    save_grid(out_dir / "grid.png", inputs, result, labels, names, view)
    if result.localisation is not None:
        write_text(out_dir / "localisation.csv", result.localisation.round(4).to_csv(index=False))
    if result.sanity is not None:
        write_text(out_dir / "sanity.csv", result.sanity.round(4).to_csv(index=False))
    write_json(
        out_dir / "summary.json",
        {
            "explainers": list(names),
            "pairs": len(result.pairs),
            "localisation": None
            if result.localisation is None
            else result.localisation.to_dict("records"),
            "sanity": None if result.sanity is None else result.sanity.to_dict("records"),
        },
    )


# -- from a run ---------------------------------------------------------------------------


def inputs_from_data(data: Any, view: ModelView, limit: int) -> ExplainInputs:
    """The first ``limit`` test images of a data bundle, with their true classes."""
    if data.per_patient:
        return _photographs_of_patients(data, view, limit)
    index = data.test_idx[:limit]
    rows = data.table.iloc[index].reset_index(drop=True)
    if data.task.single_label:
        true = [[int(t)] for t in data.targets[index]]
    else:
        true = [[int(i) for i in np.flatnonzero(t)] for t in data.targets[index]]
    return ExplainInputs(
        images=data.store.batch(index), rows=rows, true=true, extra=view.extra_inputs(rows)
    )


def _photographs_of_patients(data: Any, view: ModelView, limit: int) -> ExplainInputs:
    """A both-eyes run's first test patients, each photograph of theirs (up to ``limit``)
    with its other eye; the true classes are the patient's labels."""
    store = data.store
    photos, partners, sides, true = [], [], [], []
    for patient in data.test_idx:
        left, right = (int(i) for i in store.pairs[patient])
        target = data.targets[patient]
        labels = [int(target)] if data.task.single_label else np.flatnonzero(target).tolist()
        one_eye = data.table["eye"].iloc[patient] != BOTH
        own = [(left, right, LEFT), (right, left, RIGHT)]
        if one_eye:  # the photograph there is, once, beside itself as in training
            flag = data.table["eye"].iloc[patient]
            own = [(left, left, LEFT if flag == LEFT_ONLY else RIGHT)]
        for photo, partner, side in own:
            photos.append(photo)
            partners.append(partner)
            sides.append(side)
            true.append([int(i) for i in labels])
        if len(photos) >= limit:
            break
    photos, partners, sides, true = photos[:limit], partners[:limit], sides[:limit], true[:limit]
    rows = data.photos.iloc[photos].reset_index(drop=True)
    return ExplainInputs(
        images=store.images.batch(np.array(photos)),
        rows=rows,
        true=true,
        extra=view.extra_inputs(rows),
        partners=store.images.batch(np.array(partners)),
        sides=torch.tensor(sides, dtype=torch.long),
    )


def inputs_from_files(source: Path, view: ModelView) -> ExplainInputs:
    """Images given by the user: a file, or every image in a folder (true classes, age and
    sex unknown)."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        paths = [source]
    else:
        raise DataError(f"{source}: no such image or folder")
    if not paths:
        raise DataError(f"{source}: no images found")
    stems = [p.stem for p in paths]
    eyes = [s.endswith(("_left", "_right")) for s in stems]
    rows = pd.DataFrame(
        {
            "patient_id": [
                s.rsplit("_", 1)[0] if e else s for s, e in zip(stems, eyes, strict=True)
            ],
            "eye": [s.rsplit("_", 1)[1] if e else "" for s, e in zip(stems, eyes, strict=True)],
            "path": [str(p) for p in paths],
            "age": float("nan"),
            "sex": "",
        }
    )
    arrays, kept = [], []
    for i, path in enumerate(paths):
        image = view.preprocess(path)
        verdict = check_fundus(image)
        if not verdict.usable:
            warn(f"{path}: {verdict.message}; not explained")
            continue
        arrays.append(image)
        kept.append(i)
    if not arrays:
        raise DataError(f"{source}: no usable fundus photograph to explain")
    rows = rows.iloc[kept].reset_index(drop=True)
    images = view.batch(arrays)
    paths = [paths[i] for i in kept]
    partners, sides = None, None
    if view.eyes == 2:  # each photograph beside its patient's other one (or itself)
        where = {(r.patient_id, r.eye): i for i, r in enumerate(rows.itertuples())}
        other = {"left": "right", "right": "left"}
        index = [
            where.get((r.patient_id, other.get(r.eye, "")), i)
            for i, r in enumerate(rows.itertuples())
        ]
        partners = images[torch.tensor(index)]
        sides = torch.tensor([RIGHT if eye == "right" else LEFT for eye in rows["eye"]])
    return ExplainInputs(
        images=images,
        rows=rows,
        true=[[] for _ in paths],
        extra=view.extra_inputs(rows),
        partners=partners,
        sides=sides,
    )


def explainer_calls(
    registry: Registry, names: Sequence[str] | None, configured: Sequence[PluginCall], limit: int
) -> list[PluginCall]:
    """The explainers named, else the run's own, else every installed one."""
    if names:
        specs = [registry.get("explainer", name) for name in names]
    elif configured:
        return list(configured)
    else:
        specs = registry.specs("explainer")
    if not specs:
        raise ConfigError("no explainer plugin is installed")
    options = ExplainOptions(max_images=limit).model_dump()
    return [
        PluginCall(
            spec, spec.validate({}, where=Where(None, f"explainer {spec.name}")), None, options
        )
        for spec in specs
    ]


def explain_run(
    vdir: VariantDirectory,
    registry: Registry,
    *,
    explainers: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    images: Path | None = None,
    layer: str | None = None,
    max_images: int = 64,
    checkpoint: str | None = None,
    out_dir: Path,
) -> Explanations:
    """Explain a finished run: its test images, or the photographs in ``images``."""
    from odirkit.data.prepare import prepare_data
    from odirkit.engine.device import resolve_device
    from odirkit.engine.models import build_model
    from odirkit.predict import load_trained

    exp, model, view = load_trained(vdir, registry, checkpoint)
    calls = explainer_calls(registry, explainers, exp.explainers, max_images)
    every_installed = not explainers and not exp.explainers
    asked = None
    if labels:
        unknown = [x for x in labels if x not in view.labels]
        if unknown:
            raise ConfigError(
                f"--label {unknown[0]!r}: the run learned {', '.join(view.labels)} only"
            )
        asked = [view.labels.index(x) for x in labels]
    device = resolve_device(exp.config.device)
    random_model = None
    if images is not None:
        inputs = inputs_from_files(images, view)
    else:
        data = prepare_data(exp, pairs=exp.eyes == 2)
        inputs = inputs_from_data(data, view, max_images)

        def random_model() -> nn.Module:
            torch.manual_seed(derive_seed(exp.config.seed, 7))
            return build_model(exp, len(view.labels))

    return explain(
        model=model,
        view=view,
        calls=calls,
        inputs=inputs,
        device=device,
        out_dir=out_dir,
        seed=exp.config.seed,
        random_model=random_model,
        asked=asked,
        layer_override=layer,
        skip_inapplicable=every_installed,  # those asked for say why they cannot apply
    )


def read_flags(explain_dir: Path) -> list[str]:
    """The flags of explanations written earlier: failed sanity checks (``sanity.csv``)
    and localisation no better than chance (``localisation.csv``)."""
    folder = Path(explain_dir)
    sanity = localisation = None
    if (folder / "sanity.csv").exists():
        table = pd.read_csv(folder / "sanity.csv")
        if {"fails_randomisation", "fails_input_dependence"} <= set(table.columns):
            sanity = table
    if (folder / "localisation.csv").exists():
        localisation = pd.read_csv(folder / "localisation.csv")
    return Explanations([], localisation=localisation, sanity=sanity).flagged()
