"""Running explainer plugins: maps, overlays, grids, localisation scores, sanity checks.

For a trained model and a set of images, every explainer computes one map per
image class (one image and one class, :class:`ImageClass`), batched:

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

from odirkit.explain.drawing import (
    HEAT,
    heat_colours,
    overlay,
    save_grid,
)
from odirkit.explain.explaining import (
    choose_image_classes,
    explain,
)
from odirkit.explain.inputs import (
    explain_run,
    explainer_calls,
    inputs_from_data,
    inputs_from_files,
    read_flags,
)
from odirkit.explain.maps import (
    compute_maps,
    predicted_targets,
    targets_of_logits,
)
from odirkit.explain.records import (
    EXPLAIN_BATCH,
    INPUT_COMPARISONS,
    POINTING_TOLERANCE,
    SANITY_IMAGE_CLASSES,
    SANITY_LIMIT,
    ExplainInputs,
    Explanations,
    ImageClass,
)
from odirkit.explain.scores import (
    input_dependence,
    lesion_mask,
    localisation_scores,
    pointing_and_energy,
    rank_correlation,
    sanity_checks,
)

__all__ = [
    "EXPLAIN_BATCH",
    "HEAT",
    "INPUT_COMPARISONS",
    "POINTING_TOLERANCE",
    "SANITY_IMAGE_CLASSES",
    "SANITY_LIMIT",
    "ExplainInputs",
    "Explanations",
    "ImageClass",
    "choose_image_classes",
    "compute_maps",
    "explain",
    "explain_run",
    "explainer_calls",
    "heat_colours",
    "input_dependence",
    "inputs_from_data",
    "inputs_from_files",
    "lesion_mask",
    "localisation_scores",
    "overlay",
    "pointing_and_energy",
    "predicted_targets",
    "rank_correlation",
    "read_flags",
    "sanity_checks",
    "save_grid",
    "targets_of_logits",
]
