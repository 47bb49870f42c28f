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
- a **model-randomisation sanity check** (Adebayo et al. 2018): the rank
  correlation between the maps of the trained model and those of the same
  architecture re-initialised. A faithful explainer's maps change, so the
  correlation is low.

Written to an ``explain/`` folder: ``maps.npz`` (the raw maps), overlays
(green through red by importance), ``grid.png`` (an example per class, a
column per explainer), ``localisation.csv`` and ``sanity.csv``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.config import PluginCall
from odirkit.console import progress_bar
from odirkit.data.images import FOV_THRESHOLD, Preprocessing, preprocess_mask
from odirkit.errors import ConfigError, PluginError
from odirkit.files import atomic_write, write_json, write_text
from odirkit.seeding import derive_seed

EXPLAIN_BATCH = 16
SANITY_PAIRS = 16
POINTING_TOLERANCE = 0.03  # of the image side: 15 px at 512


@dataclass
class ExplainInputs:
    """Images to explain and what is known of them."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    rows: pd.DataFrame  # patient_id, eye, path (and, when known, image_path, mask_path_<L>)
    true: list[list[int]]  # per image: the true class indices (empty when unknown)
    metadata: torch.Tensor | None = None  # [N, 2] for a model with metadata fusion


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


class ImagesOnly(nn.Module):
    """A metadata-fusion model seen as a function of the images alone (metadata held)."""

    def __init__(self, model: nn.Module, metadata: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.metadata = metadata

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        meta = self.metadata
        if images.shape[0] != meta.shape[0]:  # Captum's noisy copies, repeat-interleaved
            meta = meta.repeat_interleave(images.shape[0] // meta.shape[0], dim=0)
        return self.model(images, meta)


# -- layers -----------------------------------------------------------------------------


def candidate_layers(model: nn.Module, limit: int = 20) -> list[str]:
    """Names of the modules a layer-based explainer can use: the last convolutions,
    activations and blocks with spatial output, deepest last."""
    names = [
        name
        for name, module in model.named_modules()
        if name
        and isinstance(
            module,
            nn.Conv2d
            | nn.ReLU
            | nn.LeakyReLU
            | nn.SiLU
            | nn.GELU
            | nn.Sequential
            | nn.BatchNorm2d
            | nn.MaxPool2d,
        )
    ]
    return names[-limit:]


def resolve_layer(model: nn.Module, choice: str, default: str | None) -> tuple[str, nn.Module]:
    """``default`` (the model's CAM layer), ``auto`` (the last convolution), or a name."""
    if choice == "default":
        choice = default or "auto"
    if choice == "auto":
        convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ConfigError('layer = "auto": this model has no convolution; name a layer')
        choice = convs[-1]
    try:
        return choice, model.get_submodule(choice)
    except AttributeError:
        listed = ", ".join(candidate_layers(model))
        raise ConfigError(
            f"the model has no layer {choice!r}; candidate layers (deepest last): {listed}"
        ) from None


# -- computing maps ------------------------------------------------------------------------


def _normalise(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> torch.Tensor:
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (images.to(device).float() / 255.0 - m) / s


def predicted_targets(
    model: nn.Module, x: torch.Tensor, single_label: bool, metadata: torch.Tensor | None
) -> list[list[int]]:
    """The predicted class (single-label) or every label above 0.5 (multi-label; at
    least the most probable one)."""
    with torch.no_grad():
        logits = model(x, metadata) if metadata is not None else model(x)
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
    metadata: torch.Tensor | None = None,
    batch_size: int = EXPLAIN_BATCH,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``float32 [P, S, S]``: the explainer's map for each pair, in batches."""
    maps = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        index = torch.tensor([p.image for p in chunk], device=x.device)
        targets = torch.tensor([p.target for p in chunk], device=x.device)
        subject: nn.Module = model
        if metadata is not None:
            subject = ImagesOnly(model, metadata[index.cpu()].to(x.device))
        torch.manual_seed(derive_seed(seed, start))  # SmoothGrad's noise repeats exactly
        result = explainer(subject, x[index], targets, layer)
        if not isinstance(result, torch.Tensor) or result.shape != (len(chunk), *x.shape[-2:]):
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result)
            raise PluginError(
                f"an explainer returned {shape}; expected [B, H, W] maps at the input size"
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


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (on a 56x56 grid, for speed)."""
    from scipy.stats import spearmanr

    def small(m: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(m)[None, None]
        return torch.nn.functional.adaptive_avg_pool2d(t, 56).flatten().numpy()

    x, y = small(a), small(b)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


# -- drawing --------------------------------------------------------------------------------


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Importance in [0, 1] -> RGB in [0, 1], green through yellow to red."""
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("odirkit", ["#1a9641", "#ffff33", "#d7191c"])
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
) -> None:
    """One row per class (its example image), the image then one column per explainer."""
    import matplotlib.pyplot as plt

    from odirkit.figures import save_figure
    from odirkit.labels import LABEL_NAMES

    examples = sorted(
        ((i, p) for i, p in enumerate(result.pairs) if p.example), key=lambda item: item[1].target
    )
    if not examples:
        return
    columns = 1 + len(names)
    fig, axes = plt.subplots(
        len(examples), columns, figsize=(2.6 * columns, 2.6 * len(examples)), squeeze=False
    )
    for row, (i, pair) in enumerate(examples):
        image = inputs.images[pair.image].permute(1, 2, 0).numpy()
        axes[row][0].imshow(image)
        label = labels[pair.target]
        axes[row][0].set_title(f"{label} ({LABEL_NAMES.get(label, label)})", fontsize=8)
        for col, name in enumerate(names, start=1):
            axes[row][col].imshow(overlay(image, result.maps[name][i]))
            if row == 0:
                axes[row][col].set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


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
    calls: Sequence[PluginCall],
    inputs: ExplainInputs,
    labels: Sequence[str],
    single_label: bool,
    mean: Sequence[float],
    std: Sequence[float],
    cam_layer: str | None,
    device: torch.device,
    out_dir: Path,
    seed: int,
    prep: Preprocessing | None = None,
    random_model: Callable[[], nn.Module] | None = None,
    asked: Sequence[int] | None = None,
    layer_override: str | None = None,
) -> Explanations:
    """Run ``calls`` (explainer plugins) on ``inputs``; write everything to ``out_dir``."""
    model = model.to(device).eval()
    x = _normalise(inputs.images, mean, std, device)
    meta = inputs.metadata.to(device) if inputs.metadata is not None else None
    predicted = predicted_targets(model, x, single_label, meta)
    max_images = max((c.options.get("max_images", 64) for c in calls), default=64)
    pairs = choose_pairs(inputs, predicted, labels, asked, max_images)
    result = Explanations(pairs)
    names = []
    with progress_bar() as bar:
        for call in calls:
            explainer = call.build()
            needs_layer = call.spec.meta.get("needs_layer", True)
            layer_name, layer = (None, None)
            if needs_layer:
                choice = layer_override or call.options.get("layer", "default")
                layer_name, layer = resolve_layer(model, choice, cam_layer)
            task = bar.add_task(f"explain {call.name}", total=len(pairs), status="")
            result.maps[call.name] = compute_maps(
                explainer,
                model,
                x,
                pairs,
                layer,
                seed=seed,
                metadata=meta,
                progress=lambda n, t=task: bar.advance(t, n),
            )
            names.append(call.name)
            if random_model is not None and call.options.get("sanity", True):
                result.sanity = pd.concat(
                    [
                        result.sanity if result.sanity is not None else pd.DataFrame(),
                        _sanity(
                            call,
                            explainer,
                            random_model,
                            x,
                            pairs,
                            layer_name,
                            seed,
                            meta,
                            result.maps[call.name],
                            device,
                        ),
                    ],
                    ignore_index=True,
                )
    if prep is not None:
        result.localisation = _localisation(inputs, result, labels, prep)
    _write(out_dir, inputs, result, labels, names)
    return result


def _sanity(
    call: PluginCall,
    explainer: Any,
    random_model: Callable[[], nn.Module],
    x: torch.Tensor,
    pairs: list[Pair],
    layer_name: str | None,
    seed: int,
    meta: torch.Tensor | None,
    trained: np.ndarray,
    device: torch.device,
) -> pd.DataFrame:
    fresh = random_model().to(device).eval()
    layer = fresh.get_submodule(layer_name) if layer_name else None
    subset = pairs[:SANITY_PAIRS]
    randomised = compute_maps(explainer, fresh, x, subset, layer, seed=seed, metadata=meta)
    scores = [rank_correlation(trained[i], randomised[i]) for i in range(len(subset))]
    valid = [s for s in scores if not math.isnan(s)]
    return pd.DataFrame(
        [
            {
                "explainer": call.name,
                "pairs": len(subset),
                "rank_correlation_with_random_model": float(np.mean(valid))
                if valid
                else float("nan"),
                "constant_maps": len(scores) - len(valid),
            }
        ]
    )


def _localisation(
    inputs: ExplainInputs, result: Explanations, labels: Sequence[str], prep: Preprocessing
) -> pd.DataFrame | None:
    lesion = [(i, p) for i, p in enumerate(result.pairs) if p.lesion]
    if not lesion or "image_path" not in inputs.rows.columns:
        return None
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
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {name: maps.astype(np.float16) for name, maps in result.maps.items()}
    arrays["image"] = np.array([p.image for p in result.pairs])
    arrays["target"] = np.array([labels[p.target] for p in result.pairs])
    arrays["patient_id"] = inputs.rows["patient_id"].astype(str).to_numpy()[arrays["image"]]
    arrays["eye"] = inputs.rows["eye"].astype(str).to_numpy()[arrays["image"]]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(out_dir / "maps.npz", lambda fh: fh.write(buffer.getvalue()))
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
            atomic_write(target, lambda fh, d=data: fh.write(d))
    save_grid(out_dir / "grid.png", inputs, result, labels, names)
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


def inputs_from_data(data: Any, limit: int, *, metadata: bool = False) -> ExplainInputs:
    """The first ``limit`` held-out images of a data bundle, with their true classes."""
    index = data.test_idx[:limit]
    rows = data.table.iloc[index].reset_index(drop=True)
    if data.task.single_label:
        true = [[int(t)] for t in data.targets[index]]
    else:
        true = [[int(i) for i in np.flatnonzero(t)] for t in data.targets[index]]
    meta = data.metadata_tensor(index) if metadata else None
    return ExplainInputs(images=data.store.batch(index), rows=rows, true=true, metadata=meta)


def inputs_from_files(
    source: Path, prep: Preprocessing, *, metadata: bool = False
) -> ExplainInputs:
    """Images given by the user: a file, or every image in a folder (true classes unknown)."""
    from odirkit.data.images import IMAGE_SUFFIXES, preprocess
    from odirkit.errors import DataError

    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        paths = [source]
    else:
        raise DataError(f"{source}: no such image or folder")
    if not paths:
        raise DataError(f"{source}: no images found")
    arrays = [preprocess(p, prep) for p in paths]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    stems = [p.stem for p in paths]
    rows = pd.DataFrame(
        {
            "patient_id": [
                s.rsplit("_", 1)[0] if s.endswith(("_left", "_right")) else s for s in stems
            ],
            "eye": [s.rsplit("_", 1)[1] if s.endswith(("_left", "_right")) else "" for s in stems],
            "path": [str(p) for p in paths],
        }
    )
    meta = torch.tensor([[0.0, 0.5]] * len(paths)) if metadata else None  # age, sex unknown
    return ExplainInputs(images=images, rows=rows, true=[[] for _ in paths], metadata=meta)
