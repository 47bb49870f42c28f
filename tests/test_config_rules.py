"""The configuration's cross-key rules, each at its boundary: folds and fold, repeated
labels, partial fine-tuning, and the training recipe (blr or lr, warm-up, min_lr).

test_config.py checks the messages through whole TOML files; test_recipe.py the recipe's
effect on training.
"""

from __future__ import annotations

import pydantic
import pytest

from odirkit.config.schema import DataConfig, ModelConfig, TrainConfig


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"folds": 1},
            r"error, folds = 1 is no cross-validation: use 0 \(one split\) or 2 or more \[",
        ),
        ({"fold": 0}, r"error, fold needs folds >= 2 \["),
        ({"folds": 0, "fold": 0}, r"error, fold needs folds >= 2 \["),
        ({"folds": 3, "fold": 3}, r"error, fold must be below folds \(3\), got 3 \["),
        ({"folds": 3, "fold": 4}, r"fold must be below folds \(3\), got 4"),
        ({"labels": ["N", "D", "N"]}, r"error, labels must not repeat \["),
    ],
)
def test_data_rules_refuse(keys, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        DataConfig(**keys)


@pytest.mark.parametrize(
    "keys",
    [{"folds": 0}, {"folds": 2}, {"folds": 3, "fold": 2}, {"folds": 3, "fold": 0}, {}],
)
def test_data_rules_accept(keys):
    config = DataConfig(**keys)
    assert all(getattr(config, key) == value for key, value in keys.items())


@pytest.mark.parametrize(
    ("table", "key", "given"),
    [
        (DataConfig, "crop_to_fov", "yes"),  # lax validation reads these as True, 3, 0.3
        (DataConfig, "crop_to_fov", 1),
        (DataConfig, "folds", "3"),
        (DataConfig, "folds", 3.0),
        (DataConfig, "test_fraction", "0.3"),
        (TrainConfig, "epochs", "10"),
        (TrainConfig, "lr", "0.001"),
        (TrainConfig, "lr", True),
        (ModelConfig, "name", 3),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_never_coerced(table, key, given):
    with pytest.raises(pydantic.ValidationError, match=key):
        table(**{key: given})


def test_tta_true_is_the_default_rotations_false_none_and_views_are_checked():
    from odirkit.config.evaluation import EvalConfig
    from odirkit.tta import DEFAULT_TTA

    assert EvalConfig(tta=True).tta == list(DEFAULT_TTA) and DEFAULT_TTA
    assert EvalConfig(tta=False).tta == [] and EvalConfig().tta == []
    views = ["identity", "rotate:-15", {"name": "shade"}]
    assert EvalConfig(tta=views).tta == views
    with pytest.raises(pydantic.ValidationError, match="unknown test-time view 'flip'"):
        EvalConfig(tta=["identity", "flip"])


def test_partial_fine_tuning_and_its_blocks_go_together():
    assert ModelConfig(finetune="partial", finetune_blocks=1).finetune_blocks == 1
    assert ModelConfig().finetune_blocks is None
    with pytest.raises(
        pydantic.ValidationError,
        match=r'error, finetune = "partial" needs finetune_blocks = <how many> \[',
    ):
        ModelConfig(finetune="partial")
    with pytest.raises(
        pydantic.ValidationError, match=r'applies to finetune = "partial", not "full"'
    ):
        ModelConfig(finetune_blocks=2)


def test_blr_and_an_equal_lr_may_both_be_given_a_different_one_not():
    assert TrainConfig(blr=0.01, batch_size=128, lr=0.005).lr == 0.005
    with pytest.raises(pydantic.ValidationError, match=r"blr = 0.01 makes lr = .* = 0.005"):
        TrainConfig(blr=0.01, batch_size=128, lr=0.0051)
    assert TrainConfig(blr=0.01, batch_size=512).lr == pytest.approx(0.02)
    assert TrainConfig(lr=0.3).lr == 0.3  # no blr: lr as given


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"warmup_epochs": 1}, r'warmup_epochs needs scheduler = "warmup_cosine" \(scheduler'),
        (
            {"scheduler": "warmup_cosine", "epochs": 4, "warmup_epochs": 4},
            r"error, warmup_epochs \(4\) must be fewer than epochs \(4\): the run would end within "
            r"the warm-up, its rate never reaching lr nor the cosine \[",
        ),
        ({"scheduler": "warmup_cosine", "lr": 1e-3, "min_lr": 1e-3}, r"min_lr \(0.001\) must lie"),
    ],
)
def test_recipe_rules_refuse_at_their_boundary(keys, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        TrainConfig(**keys)


def test_recipe_rules_accept_just_inside_their_boundary():
    config = TrainConfig(
        scheduler="warmup_cosine", epochs=4, warmup_epochs=3.5, lr=1e-3, min_lr=9.9e-4
    )
    assert (config.warmup_epochs, config.min_lr) == (3.5, 9.9e-4)
    assert TrainConfig(scheduler="warmup_cosine", epochs=4).warmup_epochs == 0


# Each documented bound at its edge: the last value accepted and the first refused, written
# out here (not read from the schema, so a bound changed there fails here).
BOUNDS = [
    # (table, key, accepted, refused)
    ("data", "labels", ["N", "D"], ["N"]),  # a classifier needs two labels
    ("data", "image_size", 16, 15),
    ("data", "image_size", 4096, 4097),
    ("data", "test_fraction", 0.999, 1.0),
    ("data", "test_fraction", 0.001, 0.0),
    ("data", "val_fraction", 0.0, -0.001),
    ("data", "val_fraction", 0.999, 1.0),
    ("data", "folds", 100, 101),
    ("model", "metadata_hidden", 1, 0),
    ("model", "finetune_blocks", 1, 0),
    ("train", "epochs", 1, 0),
    ("train", "batch_size", 1, 0),
    ("train", "eval_batch_size", 1, 0),
    ("train", "lr", 1e-9, 0.0),
    ("train", "momentum", 0.0, -0.001),
    ("train", "momentum", 0.999, 1.0),  # momentum 1 never forgets: no SGD
    ("train", "weight_decay", 0.0, -1e-6),
    ("train", "gamma", 1.0, 1.001),
    ("train", "gamma", 1e-6, 0.0),
    ("train", "step_size", 1, 0),
    ("train", "patience", 0, -1),
    ("train", "checkpoint_every", 0, -1),
    ("train", "precise_bn", 0, -1),
    ("train", "num_workers", 0, -1),
    ("eval", "confidence", 0.999, 1.0),  # a 100% interval is the whole line
    ("eval", "confidence", 0.501, 0.5),
    ("eval", "bootstrap", 0, -1),
    ("eval", "bootstrap", 100_000, 100_001),
]


def table(name: str):
    from odirkit.config.evaluation import EvalConfig

    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}[
        name
    ]


@pytest.mark.parametrize(("name", "key", "accepted", "refused"), BOUNDS)
def test_every_bound_accepts_its_last_value_and_refuses_the_next(name, key, accepted, refused):
    extra = {"finetune": "partial"} if key == "finetune_blocks" else {}
    assert getattr(table(name)(**{key: accepted}, **extra), key) == accepted
    with pytest.raises(pydantic.ValidationError, match=key):
        table(name)(**{key: refused}, **extra)


def test_eval_and_compare_defaults_and_metric_names():
    from odirkit.config.evaluation import CompareConfig, EvalConfig

    assert EvalConfig().checkpoint == "best"  # the epoch the validation monitor chose
    assert CompareConfig(metrics=["f1_D", "auc_N", "f1_micro"]).metrics[0] == "f1_D"
    for wrong in (["f1_DG"], ["f1_X"], ["recall_D2"], ["f1"]):  # one label, named fully
        with pytest.raises(pydantic.ValidationError, match="unknown metric"):
            CompareConfig(metrics=wrong)
    with pytest.raises(pydantic.ValidationError, match="metrics"):
        CompareConfig(metrics=[])
