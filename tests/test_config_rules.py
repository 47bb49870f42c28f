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
