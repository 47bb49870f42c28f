"""The plugin API: the hooks a plugin implements.

A plugin is a module (or any object) whose functions are marked with
``@odirkit.hookimpl`` and named after the hooks below. It is found through an
entry point of group ``odirkit`` in its distribution's ``pyproject.toml``::

    [project.entry-points.odirkit]
    tinynet = "odirkit_tinynet"

Each hook is called once, at discovery, with a ``register`` callback::

    register(name, factory, *, summary="", **meta)

``factory`` is a callable whose keyword parameters, with their type hints and
defaults, are the plugin's parameters in an experiment TOML file: odirkit
validates the TOML table against that signature before anything runs, so a
plugin never sees an unknown key or a value of the wrong type. Parameters
without a default are required. Use TOML-friendly types: ``int``, ``float``,
``bool``, ``str``, ``list[...]``, ``Literal[...]`` and ``X | None``.

``summary`` is the one line ``odirkit list-plugins`` shows. ``meta`` carries
kind-specific facts listed under each hook, plus, for every kind,
``test_params`` (a dict of parameters that make the plugin small and fast,
used by the conformance tests, ``odirkit.testing``) and ``prepare`` (a
callable ``prepare(params)`` that fetches what the plugin needs before a run
writes anything). The keywords each kind accepts are declared
(``odirkit.contract``): an unknown one, or a value of the wrong type, marks
the plugin broken with a message naming it and the closest valid keyword.

A parameter may carry its range as ``typing.Annotated[float,
pydantic.Field(ge=0, lt=1)]``: the experiment's value is checked against it,
and ``odirkit describe`` shows it.

The hook documentation here is the reference a plugin author reads; it is
rendered in ``docs/hooks.md``, and a test fails when the two disagree.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "odirkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback each registration hook receives."""

    def __call__(self, name: str, factory: Any, *, summary: str = "", **meta: Any) -> None: ...


@hookspec
def odirkit_register_models(register: Register) -> None:
    """Register model plugins.

    ``factory(*, num_classes: int, **params) -> torch.nn.Module``. The module
    maps a float batch ``[B, 3, H, W]``, normalised with the model's ``mean``
    and ``std``, to logits ``[B, num_classes]``. odirkit supplies
    ``num_classes``; when the factory also takes ``input_size`` and the
    experiment does not set it, odirkit passes the experiment's
    ``data.image_size``.

    ``meta`` keys:

    - ``input_size`` (int): the image size the model expects when the
      experiment does not say (e.g. 299 for Inception v3);
    - ``mean``, ``std`` (three floats each): the normalisation of its inputs
      (default 0.5 and 0.5, mapping [0, 1] to [-1, 1]);
    - ``cam_layer`` (str): dotted name of the module whose activations
      Grad-CAM explains by default (``"features.10"``);
    - ``cam_reshape`` (str): how that layer's output becomes the feature map
      ``[B, C, h, w]`` layer methods need, when it is not one: ``"tokens:K"``
      for a transformer's token sequence ``[B, N, C]`` (the first K tokens,
      class and register tokens, dropped; the rest laid out row by row on the
      square patch grid), ``"nhwc"`` for ``[B, H, W, C]`` (Swin); the
      conformance check fails a CAM layer whose output is not a grid;
    - ``meta_for`` (callable): ``meta_for(params) -> dict`` for facts that
      depend on the parameters (a timm architecture's input size, mean, std
      and CAM layer); its result updates the static meta;
    - ``eyes`` (1 or 2): 2 for a patient model that sees both eyes at once —
      it maps ``[2B, 3, H, W]``, rows ``2i`` and ``2i + 1`` patient ``i``'s
      left and right photographs, to the patients' logits ``[B, num_classes]``
      and is built on ``odirkit.api.BothEyes`` (so that one eye can be
      explained with the other held fixed); it needs ``data.level =
      "patient"``;
    - ``prepare`` (callable): ``prepare(params)``, called by ``odirkit run``
      before anything is trained or written, to fetch what the model needs
      (pretrained weights); it raises ``odirkit.PluginError`` with a message
      saying what was wanted and how to supply it. The factory itself, when
      called on PyTorch's meta device (odirkit checking parameters), must not
      download anything;
    - ``test_params`` (dict): parameters for a small, fast instance;
      ``test_input_size`` (int): the image size the conformance checks use.

    Example::

        @odirkit.hookimpl
        def odirkit_register_models(register):
            register("tinynet", build_tinynet, summary="A two-layer CNN",
                     cam_layer="features.3", test_params={"width": 4})
    """


@hookspec
def odirkit_register_augmenters(register: Register) -> None:
    """Register augmenter plugins.

    ``factory(**params)`` returns one of two things:

    - a callable ``aug(images, generator) -> images`` applied online to each
      training batch on the training device: ``images`` is a float tensor
      ``[B, 3, H, W]`` in [0, 1] and the result has the same shape, dtype and
      range; ``generator`` is a ``torch.Generator`` on the images' device and
      the only source of randomness the augmenter may use, so that a run
      repeats exactly;
    - an object with ``expand(train, ctx) -> odirkit.api.ExtraSamples``
      that adds samples once, before training starts (offline augmentation,
      the DCGAN). ``train`` is the table of the training images (never a
      validation or test one); ``ctx`` is an ``odirkit.api.ExpandContext``:
      ``ctx.images(positions)`` gives those images preprocessed (``uint8
      [n, 3, S, S]``), ``ctx.targets`` their targets, ``ctx.task`` the labels,
      ``ctx.image_size``, ``ctx.device``, ``ctx.generator`` and ``ctx.seed`` for
      randomness, ``ctx.run_dir`` for the augmenter's files and
      ``ctx.cache_dir`` for work shared between runs. The result holds a
      table (one row per new image, with the task's label columns) and the
      images, ``uint8 [N, 3, S, S]``; they join the training set only.

    ``meta`` keys: ``deterministic`` (bool: the callable ignores its generator and
    gives the same output for the same input; it may then be a test-time view,
    ``[eval] tta``), ``prepare`` and ``test_params`` as for every kind.
    """


@hookspec
def odirkit_register_explainers(register: Register) -> None:
    """Register explainer plugins.

    ``factory(**params)`` returns a callable
    ``explain(model, images, targets, layer, additional_forward_args=None)
    -> Tensor[B, H, W]``: ``images`` is the normalised batch ``[B, 3, H, W]``,
    ``targets`` the class index to explain for each image (a long tensor
    ``[B]``), and ``layer`` the resolved module for layer-based methods (the
    model's CAM layer unless the experiment names another). A model with
    other inputs besides the image (age and sex, ``[model] metadata = true``)
    is called as ``model(images, *additional_forward_args)``: the explainer
    passes them on, held fixed, exactly as Captum's ``attribute`` takes
    ``additional_forward_args``. The result is non-negative and has the
    input's spatial size.

    An explainer that cannot explain some models (Guided Grad-CAM needs
    ReLUs) declares it, and says so rather than return another method's map:

    ``meta`` keys: ``needs_layer`` (bool, default True); ``applies_to``
    (callable): ``applies_to(model) -> None`` when the explainer can explain
    ``model``, else the reason it cannot, and the explainer raises
    ``odirkit.NotApplicable`` when called on such a model (the conformance
    check tries every explainer on a ReLU-free CNN and a tiny Vision
    Transformer and holds it to its word; an experiment asking for it stops
    before training); ``prepare`` and ``test_params`` as for every kind.
    """


@hookspec
def odirkit_register_datasets(register: Register) -> None:
    """Register dataset plugins.

    ``factory(*, root: str, **params) -> pandas.DataFrame`` returns the sample
    table: one row per image with at least the columns ``patient_id``,
    ``eye`` (``"left"`` or ``"right"``), ``path`` (absolute, or relative to
    ``root``), ``age`` (years), ``sex`` (``"Male"``/``"Female"``) and one 0/1
    column per label ``N D G C A H M O``. A column ``mask_path_<L>`` may give,
    per image, the path of a binary lesion mask for label ``L`` (empty when
    there is none): grey 0/255 or 0/1, a colour on black (IDRiD's red TIFFs),
    16-bit, or an overlay on a transparent background; a pixel is lesion where
    its brightest channel is above 127 (above 0 in a 0/1 mask). Splitting,
    preprocessing, caching and loading belong to the core. A factory that
    cannot find its data raises ``odirkit.DataError`` saying where it looked
    and what to do. Optional
    columns ``patient_<L>`` give the patient-level labels (for
    ``data.level = "patient"``); without them a patient's labels are the union
    of its eyes' (N only when no eye has a disease). A report for the run's
    ``data.json`` (what was left out, and why) may be put in
    ``table.attrs["odirkit_report"]``; its ``graded_labels`` (a list of labels)
    says which labels the collection grades at all, so that external validation
    scores only those (default: the labels some image carries). An optional
    column ``split`` (``train``, ``val``, ``test``; one per patient) is the
    collection's own split, which the core then keeps.

    ``meta`` keys: ``test_setup`` (a callable writing a small sample of the
    data into a folder, for plugins that read data from disk rather than
    make it), ``prepare`` and ``test_params`` as for every kind.
    """


@hookspec
def odirkit_register_loggers(register: Register) -> None:
    """Register logger plugins: experiment trackers (MLflow, TensorBoard, ...).

    ``factory(**params)`` returns an object with any of these methods (a
    missing one is simply not called):

    - ``start(run) -> dict | None``: ``run`` is an ``odirkit.api.RunInfo``
      (experiment, variant, seed, the resolved configuration, the environment
      with the git commit, the variant folder, and ``resumed``: what this
      logger's ``start`` returned when the run first started, so a resumed run
      continues the same tracked run);
    - ``log_epoch(epoch, metrics)``: after each epoch, a flat ``{name: float}``
      of the training loss and the validation metrics (``val_*``; ``test_*``
      where the experiment asks for per-epoch test scores);
    - ``log_final(final)``: ``metrics.json``, the test scores with intervals;
    - ``log_files(paths)``: files the run wrote (figures, configuration,
      explanations, GAN samples, the report);
    - ``log_external(name, result)``: the run validated on another collection
      (``[[evaluate]]``, ``odirkit evaluate``): that validation's ``metrics.json``,
      its scores under ``final`` and the change from the internal test, per metric
      with its interval, under ``comparison``;
    - ``close()``.

    Experiments list loggers as ``[[log]]`` tables: ``name`` and the plugin's
    parameters. odirkit calls them on rank 0 only under ``torchrun``. A logger
    that raises is warned about once and switched off: it never fails a run.

    ``meta`` keys: ``prepare`` and ``test_params`` as for every kind.
    """


def hook_names() -> list[str]:
    """The names of all hooks, in the order they are documented."""
    return [name for name in globals() if name.startswith("odirkit_") and callable(globals()[name])]


def render_markdown() -> str:
    """``docs/hooks.md``: this module's documentation as Markdown.

    Regenerate with ``python -c "from odirkit.hookspecs import render_markdown as r;
    print(r(), end='')" > docs/hooks.md``; a test fails when the file is stale.
    """

    lines = [
        "# Hooks",
        "",
        "<!-- generated from odirkit/hookspecs.py by odirkit.hookspecs.render_markdown -->",
        "",
        inspect.cleandoc(__doc__ or ""),
        "",
    ]
    for name in hook_names():
        fn = globals()[name]
        lines += [f"## `{name}(register)`", "", inspect.cleandoc(fn.__doc__ or ""), ""]
    return "\n".join(lines)
