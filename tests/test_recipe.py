"""The fine-tuning recipe of foundation models, for any model: AdamW with layer-wise
learning-rate decay, warm-up then cosine per step, the base learning rate scaled by the
batch, label smoothing, mixup / cutmix, linear probing and partial fine-tuning; each a
[train] or [model] key, checked, and a resumed run continuing to the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import tiny_experiment

from odirkit.config import ModelConfig, TrainConfig, load_experiment
from odirkit.engine.heads import MetadataFusion
from odirkit.engine.losses import make_loss
from odirkit.engine.recipe import BatchMixer, WarmupCosine, apply_finetune, parameter_groups
from odirkit.engine.trainer import make_optimizer
from odirkit.errors import ConfigError

DEPTH = 6  # test_vit's blocks


def tiny_vit(pool: str = "avg") -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_vit", num_classes=3, img_size=32, global_pool=pool)


def retfound_layer(name: str) -> int:
    """RETFound's util/lr_decay.get_layer_id_for_vit: stem 0, block i is i + 1, the rest
    (fc_norm, head) depth + 1."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return DEPTH + 1


# -- layer-wise decay ------------------------------------------------------------------------


@pytest.mark.parametrize("per_step", [False, True])
def test_each_group_learns_at_lr_times_decay_to_the_depth_less_its_layer(per_step):
    model = tiny_vit()
    lr, decay, weight_decay = 0.004, 0.65, 0.05
    groups = parameter_groups(
        model, lr=lr, weight_decay=weight_decay, layer_decay=decay, per_step=per_step
    )
    optimizer = make_optimizer("adamw", groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    assert isinstance(optimizer, torch.optim.AdamW)
    if per_step:  # the schedule applies each group's scale: after the warm-up, at its top
        schedule = WarmupCosine(
            optimizer, epochs=10, steps_per_epoch=4, warmup_epochs=2, min_lr=0.0
        )
        schedule.before_step(2, 0)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(group_of) == len(names)
    for name, parameter in names.items():
        group = group_of[id(parameter)]
        expected = lr * decay ** (DEPTH + 1 - retfound_layer(name))
        assert math.isclose(group["lr"], expected, rel_tol=1e-9), (name, group["lr"], expected)
        no_decay = parameter.ndim <= 1 or name in ("cls_token", "pos_embed")
        assert group["weight_decay"] == (0.0 if no_decay else weight_decay), name


def test_layer_decay_with_metadata_fusion_keeps_the_backbone_layers_and_tops_the_head():
    model = MetadataFusion(tiny_vit(), 3)
    groups = parameter_groups(model, lr=1.0, weight_decay=0.0, layer_decay=0.5, per_step=False)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        if name.startswith("head."):
            assert lr_of[id(parameter)] == 1.0, name
        elif name.startswith("backbone.blocks.2."):
            assert lr_of[id(parameter)] == 0.5 ** (DEPTH + 1 - 3), name
        elif name == "backbone.pos_embed":
            assert lr_of[id(parameter)] == 0.5 ** (DEPTH + 1), name


# -- warm-up then cosine, per step ------------------------------------------------------------


def retfound_lr(epoch: float, *, lr: float, min_lr: float, warmup: float, epochs: int) -> float:
    """RETFound's util/lr_sched.adjust_learning_rate, at a fractional epoch."""
    if epoch < warmup:
        return lr * epoch / warmup
    return min_lr + (lr - min_lr) * 0.5 * (
        1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))
    )


def test_warmup_cosine_follows_retfounds_schedule_step_by_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=0.01)
    epochs, steps, warmup = 5, 8, 1.5
    schedule = WarmupCosine(
        optimizer, epochs=epochs, steps_per_epoch=steps, warmup_epochs=warmup, min_lr=1e-5
    )
    for epoch in range(epochs):
        for step in range(steps):
            schedule.before_step(epoch, step)
            expected = retfound_lr(
                epoch + step / steps, lr=0.01, min_lr=1e-5, warmup=warmup, epochs=epochs
            )
            assert math.isclose(optimizer.param_groups[0]["lr"], expected, abs_tol=1e-12), (
                epoch,
                step,
            )


# -- the [train] and [model] keys --------------------------------------------------------------


def test_blr_sets_lr_by_the_global_batch():
    assert TrainConfig(blr=5e-3, batch_size=64).lr == pytest.approx(5e-3 * 64 / 256)
    # the resolved configuration (config.json) reads back to the same rate
    again = TrainConfig(**TrainConfig(blr=5e-3, batch_size=64).model_dump())
    assert again.lr == pytest.approx(1.25e-3)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("blr = 5e-3\nlr = 0.1", "give lr or blr, not both"),
        ("warmup_epochs = 2", 'warmup_epochs needs scheduler = "warmup_cosine"'),
        ('scheduler = "warmup_cosine"\nlr = 1e-6\nmin_lr = 1e-5', "min_lr .* below lr"),
        ('scheduler = "warmup_cosine"\nepochs = 2\nwarmup_epochs = 10', r"warmup_epochs \(10\)"),
        ("layer_decay = 1.5", "layer_decay"),
        ("label_smoothing = 1.0", "label_smoothing"),
        ("mixup = inf", "mixup"),
        ("blr = nan", "blr"),
        ('mixup_mode = "image"', "mixup_mode"),
        ('optimizer = "lamb"', "optimizer"),
    ],
)
def test_bad_recipe_keys_name_the_table_and_the_key(registry, tmp_path, train, message):
    path = tmp_path / "exp.toml"
    path.write_text(f'name = "x"\n[train]\n{train}\n')
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(path, registry)
    assert "[train]" in str(info.value) and str(path) in str(info.value)


def test_finetune_blocks_belongs_to_partial_fine_tuning():
    assert ModelConfig(finetune="partial", finetune_blocks=2).finetune_blocks == 2
    with pytest.raises(ValueError, match="needs finetune_blocks"):
        ModelConfig(finetune="partial")
    with pytest.raises(ValueError, match=r"applies to finetune = .partial."):
        ModelConfig(finetune="linear_probe", finetune_blocks=2)


def test_describe_lists_the_recipe_keys(cli):
    result = cli("describe", "experiment")
    assert result.exit_code == 0
    for key in ("layer_decay", "warmup_cosine", "blr", "label_smoothing", "cutmix", "finetune"):
        assert key in result.stdout, key
    vit = cli("describe", "model", "vit")
    for key in ("drop_path", "global_pool", "hub", "weights", "patch_size"):
        assert key in vit.stdout, key


# -- what is trained -------------------------------------------------------------------------


def trained(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_linear_probing_trains_the_head_alone():
    model = tiny_vit()
    apply_finetune(model, "linear_probe", None, 3)
    assert trained(model) == {"head.weight", "head.bias"}
    fused = MetadataFusion(tiny_vit(), 3)
    apply_finetune(fused, "linear_probe", None, 3)
    assert trained(fused) == {n for n, _ in fused.named_parameters() if n.startswith("head.")}


def test_partial_fine_tuning_trains_the_last_blocks_and_what_follows():
    model = tiny_vit()
    apply_finetune(model, "partial", 2, 3)
    expected = {
        n for n, _ in model.named_parameters() if n.startswith(("blocks.4.", "blocks.5."))
    } | {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert trained(model) == expected
    token = tiny_vit("token")
    apply_finetune(token, "partial", 1, 3)
    assert {"norm.weight", "blocks.5.mlp.fc2.weight", "head.bias"} <= trained(token)
    assert "blocks.4.mlp.fc2.weight" not in trained(token) and "pos_embed" not in trained(token)


def test_a_linear_probe_of_a_batch_norm_network_keeps_the_whole_backbone(
    cli, tmp_path, phantom_root
):
    # the backbone is frozen: its weights and its batch-norm statistics alike (training
    # in train mode and precise BN re-estimated them on the new images); only the head
    # changes
    torch.manual_seed(0)
    source = timm.create_model("resnet10t", num_classes=2)
    with torch.no_grad():
        for name, buffer in source.named_buffers():
            if "running" in name:  # statistics a pretrained network would have
                buffer.uniform_(0.5, 1.5)
    weights = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), weights)
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "timm"\narch = "resnet10t"\nweights = "{weights.as_posix()}"\n'
    text += 'finetune = "linear_probe"\n\n[train]\nepochs = 1\nbatch_size = 16\nlr = 0.01\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    state = torch.load(variant / "checkpoints" / "last.pt", weights_only=False)["model"]
    changed = {k for k, v in source.state_dict().items() if not torch.equal(v, state[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_partial_fine_tuning_needs_blocks(registry):
    from odirkit.testing import small_params

    cnn = registry.get("model", "cnn")
    with pytest.raises(ConfigError, match="needs a model with a sequence of blocks"):
        apply_finetune(cnn.build(num_classes=2, **small_params(cnn)), "partial", 1, 2)
    with pytest.raises(ConfigError, match="finetune_blocks = 7, but the model has 6 blocks"):
        apply_finetune(tiny_vit(), "partial", 7, 3)


def test_a_partial_cnn_fails_before_anything_is_written(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).replace(
        'name = "cnn"', 'name = "cnn"\nfinetune = "partial"\nfinetune_blocks = 1'
    )
    path = tmp_path / "exp.toml"
    path.write_text(text)
    result = cli("run", path, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "sequence of blocks" in result.stderr, result.output
    assert not (tmp_path / "runs").exists()


# -- label smoothing and mixup ----------------------------------------------------------------


def test_label_smoothing_moves_the_targets_as_stated():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    classes = torch.tensor([0, 2])
    smoothed = make_loss(True, None, torch.device("cpu"), smoothing=0.3)(logits, classes)
    target = torch.nn.functional.one_hot(classes, 3).float() * 0.7 + 0.1
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    assert torch.isclose(smoothed, expected)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    bce = make_loss(False, None, torch.device("cpu"), smoothing=0.3)(logits, labels)
    soft = labels * 0.7 + 0.15
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, soft)
    assert torch.isclose(bce, expected)
    shares = make_loss(False, None, torch.device("cpu"), softmax=True, smoothing=0.3)
    target = labels / labels.sum(1, keepdim=True) * 0.7 + 0.1
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    assert torch.isclose(shares(logits, labels), expected)


def mixer(**kw) -> BatchMixer:
    options = {
        "mixup": 0.8,
        "cutmix": 0.0,
        "prob": 1.0,
        "switch_prob": 0.5,
        "mode": "batch",
        "num_classes": 3,
        "single_label": True,
        "shares": False,
    }
    return BatchMixer(**{**options, **kw})


def test_mixup_mixes_images_and_targets_alike_seeded_per_step():
    x = torch.rand(6, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    state = np.random.get_state()
    mixed, targets = mixer()(x.clone(), y, seed=3, epoch=1, step=2)
    assert np.array_equal(np.random.get_state()[1], state[1])  # NumPy's stream untouched
    lam = float((mixed[0] - x[-1]).flatten()[0] / (x[0] - x[-1]).flatten()[0])
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-5)
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    assert torch.allclose(targets, lam * one_hot + (1 - lam) * one_hot.flip(0), atol=1e-5)
    again, _ = mixer()(x.clone(), y, seed=3, epoch=1, step=2)
    assert torch.equal(mixed, again)
    other, _ = mixer()(x.clone(), y, seed=3, epoch=1, step=3)
    assert not torch.equal(mixed, other)


def test_cutmix_on_multi_label_targets_and_an_odd_batch():
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]).float()
    mixed, targets = mixer(mixup=0.0, cutmix=1.0, single_label=False)(
        x.clone(), y, seed=0, epoch=0, step=1
    )
    assert torch.equal(mixed[4], x[4]) and torch.equal(targets[4], y[4])  # the odd one out
    pasted = (mixed[:4] != x[:4]).any(dim=1)  # [4, H, W]: where the box from the pair lies
    area = float(pasted[0].float().mean())
    assert 0 < area < 1
    pair = y[:4].flip(0)
    assert torch.allclose(targets[:4], (1 - area) * y[:4] + area * pair, atol=0.1)


def test_the_trainer_sets_each_steps_rate_and_mixes_each_step_by_its_epoch_and_step():
    from types import SimpleNamespace

    from test_engine import _bundle_of

    from odirkit.engine.trainer import EpochProgress, Trainer

    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    seen = []

    def mix(x, y, *, seed, epoch, step):
        seen.append(("mix", epoch, step))
        return x, torch.nn.functional.one_hot(y, 2).float()

    schedule = SimpleNamespace(before_step=lambda epoch, step: seen.append(("lr", epoch, step)))
    view = SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3, extra_inputs=lambda t: [])
    trainer = Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loss_fn=torch.nn.CrossEntropyLoss(),
        data=_bundle_of(images, np.zeros(12, dtype=np.int64)),
        device=torch.device("cpu"),
        view=view,
        batch_size=5,
        mixer=mix,
        lr_schedule=schedule,
    )
    trainer.train_epoch(EpochProgress(epoch=0))
    trainer.train_epoch(EpochProgress(epoch=1, step=1))  # resumed after its first step
    steps = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert seen == [(kind, *s) for s in steps for kind in ("lr", "mix")]


# -- a run with the whole recipe, and its resumption -------------------------------------------

RECIPE = """
[model]
name = "vit"
arch = "test_vit"
drop_path = 0.1

[train]
epochs = 3
batch_size = 8
optimizer = "adamw"
blr = 0.05
weight_decay = 0.05
layer_decay = 0.65
scheduler = "warmup_cosine"
warmup_epochs = 1
label_smoothing = 0.1
mixup = 0.8
cutmix = 1.0
monitor = "auc_macro"
checkpoint_every = 2
"""


@pytest.mark.slow
def test_an_interrupted_recipe_run_resumes_to_the_same_numbers(
    cli, tmp_path, phantom_root, monkeypatch
):
    from odirkit.engine.interrupt import StopRequested
    from odirkit.engine.trainer import Trainer

    text = tiny_experiment(phantom_root, epochs=3).split("[model]")[0] + RECIPE
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert cli("run", exp, "--out", tmp_path / "whole").exit_code == 0

    original = Trainer.train_epoch

    def stopped_in_epoch_two(self, progress, *, after_step=None, stop_requested=None):
        def after(p):
            after_step(p)
            if p.epoch == 1 and p.step == 2:
                raise StopRequested

        return original(self, progress, after_step=after, stop_requested=stop_requested)

    monkeypatch.setattr(Trainer, "train_epoch", stopped_in_epoch_two)
    broken = cli("run", exp, "--out", tmp_path / "broken")
    assert broken.exit_code != 0 and "--resume" in broken.stderr, broken.output
    monkeypatch.setattr(Trainer, "train_epoch", original)
    (run,) = (tmp_path / "broken").glob("*/*")
    assert not (run / "default/metrics.json").exists()
    resumed = cli("run", "--resume", run)
    assert resumed.exit_code == 0, resumed.output
    (reference,) = (tmp_path / "whole").glob("*/*")
    a = pd.read_csv(reference / "default/metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(run / "default/metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    lrs = a["lr"].tolist()  # each epoch's last step: still warming up, then the cosine
    assert lrs[0] < 0.05 * 8 / 256 and lrs[1] > lrs[2] > 0


# -- experiments/foundation.toml ---------------------------------------------------------------


def phantom_overrides() -> list[str]:
    """The --set overrides of the phantom command in foundation.toml's header."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).parents[1] / "experiments" / "foundation.toml").read_text()
    lines = [line.removeprefix("#").strip() for line in text.splitlines()]
    start = next(
        i for i, line in enumerate(lines) if line.startswith("odirkit run") and "--set" in line
    )
    command = []
    for line in lines[start:]:
        command.append(line.removesuffix("\\"))
        if not line.endswith("\\"):
            break
    words = shlex.split(" ".join(command))
    return [words[i + 1] for i, word in enumerate(words) if word == "--set"]


def test_the_foundation_experiment_compares_every_model_on_one_protocol(registry):
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "foundation.toml"
    runs = load_experiment(path, registry)
    models = {exp.variant.rsplit("-seed", 1)[0]: exp.model.name for exp in runs}
    assert models == {
        "cnn": "cnn",
        "vgg13_bn": "vgg13_bn",
        "inception_v3": "inception_v3",
        "retfound": "vit",
        "dinov2": "vit",
    }
    for field in ("labels", "test_fraction", "val_fraction"):
        assert len({str(getattr(exp.config.data, field)) for exp in runs}) == 1, field
    assert {exp.config.seed for exp in runs} == {0, 1, 2}
    assert {exp.config.train.monitor for exp in runs} == {"auc_macro"}
    assert len({exp.config.eval.model_dump_json() for exp in runs}) == 1
    retfound = next(exp for exp in runs if exp.variant.startswith("retfound"))
    assert retfound.model.params["hub"] == "YukunZhou/RETFound_mae_natureCFP"
    assert retfound.config.train.layer_decay == 0.65 and retfound.config.train.lr == 5e-3 * 16 / 256


def test_the_foundation_experiments_phantom_command_resolves_without_weights(registry, cli):
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "foundation.toml"
    overrides = phantom_overrides()
    runs = load_experiment(path, registry, overrides=overrides)
    assert {exp.config.data.dataset for exp in runs} == {"phantom"}
    for exp in runs:
        params = exp.model.params
        assert not params.get("pretrained") and not params.get("hub"), exp.variant
        assert exp.image_size == 80 and params.get("input_size", 80) == 80, exp.variant
    args = [a for o in overrides for a in ("--set", o)]
    assert cli("validate", path, *args).exit_code == 0
