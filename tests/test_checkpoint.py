"""Checkpoints and resuming, without training: what last.pt holds, what a resumed epoch
loop takes back from it, what it refuses, and which epoch counts as an improvement.

The epoch loop here has a one-layer model with a real optimiser, scheduler and scaler; the
end-to-end resume tests (a run killed at every write, early stopping interrupted after an
epoch without progress) are in test_engine.py, marked slow.
"""

from __future__ import annotations

import collections
import math
import pickle
import re
import types

import pytest
import torch
from torch import nn

from odirkit.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from odirkit.engine.loop import EpochLoop
from odirkit.engine.trainer import EpochProgress
from odirkit.errors import RunError


def test_a_checkpoint_reads_back_what_was_saved_with_its_format(tmp_path):
    state = {"epoch": 3, "weights": torch.arange(4.0), "history": [{"f1": 0.5}], "best": None}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["format"] == CHECKPOINT_FORMAT and back["epoch"] == 3
    assert torch.equal(back["weights"], torch.arange(4.0)) and back["history"] == [{"f1": 0.5}]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left


class Payload:
    """Any object of its own class: unpickling it would import and build it."""


def test_an_unsafe_missing_damaged_or_foreign_checkpoint_is_refused_naming_the_file(tmp_path):
    with pytest.raises(RunError, match=r"none\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"model": Payload()}, tmp_path / "code.pt")
    with pytest.raises(RunError) as info:
        load_checkpoint(tmp_path / "code.pt")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'code.pt'}: refused to load: the checkpoint holds")
    assert re.search(r"plain values \(it names [\w.]*test_checkpoint\.Payload\), and", message)
    save_checkpoint(tmp_path / "cut.pt", {"weights": torch.zeros(1000)})
    data = (tmp_path / "cut.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=r"cut\.pt: not a readable checkpoint \(\w"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(RunError, match=r"tensor\.pt: not an odirkit checkpoint$"):
        load_checkpoint(tmp_path / "tensor.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(RunError, match=r"empty\.pt: not a readable checkpoint \(.+\)$"):
        load_checkpoint(tmp_path / "empty.pt")


def epoch_loop(
    tmp_path,
    *,
    monitor: str = "f1",
    fingerprint: str = "abc",
    width: int = 3,
    scheduled: bool = True,
    scale: float | None = None,
):
    torch.manual_seed(0)
    model = nn.Linear(width, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scaler = (
        torch.amp.GradScaler("cpu", init_scale=scale)
        if scale
        else torch.amp.GradScaler("cpu", enabled=False)
    )
    trainer = types.SimpleNamespace(model=model, optimizer=optimizer, scaler=scaler)
    train = types.SimpleNamespace(monitor=monitor, patience=2, epochs=10)
    exp = types.SimpleNamespace(
        config=types.SimpleNamespace(train=train),
        fingerprint=lambda: fingerprint,
        model=types.SimpleNamespace(name="cnn"),
        variant="v",
    )
    vdir = types.SimpleNamespace(
        path=tmp_path, checkpoint=lambda name: tmp_path / "checkpoints" / f"{name}.pt"
    )
    return EpochLoop(exp, vdir, trainer, scheduler if scheduled else None)


def train_a_step(loop: EpochLoop) -> None:
    loss = loop.trainer.model(torch.ones(4, loop.trainer.model.in_features)).sum()
    loss.backward()
    loop.trainer.optimizer.step()
    loop.scheduler.step()


def test_a_loop_without_a_scheduler_or_with_a_loss_scaler_resumes(tmp_path, capsys):
    loop = epoch_loop(tmp_path, scheduled=False, scale=512.0)
    loop.progress = EpochProgress(epoch=4, step=7, loss_sum=2.5, seen=28)
    loop.save()
    assert load_checkpoint(loop.last_path)["scheduler"] is None
    again = epoch_loop(tmp_path, scheduled=False, scale=65536.0)
    again.restore()
    assert again.trainer.scaler.get_scale() == 512.0  # the scaler's state came back
    assert "at epoch 5, step 7" in capsys.readouterr().err


def test_a_resumed_loop_takes_back_everything_last_pt_holds(tmp_path):
    loop = epoch_loop(tmp_path)
    train_a_step(loop)
    loop.progress = EpochProgress(epoch=4, step=7, loss_sum=2.5, seen=28)
    loop.history = [{"epoch": 4, "val_f1": 0.6}]
    loop.best = {"epoch": 3, "monitor": "f1", "value": 0.7}
    loop.since_best, loop.stopped_early, loop.seconds_before = 1, True, 100.0
    loop.save()
    state = load_checkpoint(loop.last_path)
    # the seconds spent: those before, and those since the loop started
    assert state["fingerprint"] == "abc" and 100.0 <= state["seconds"] < 160.0

    again = epoch_loop(tmp_path)
    assert not torch.equal(again.trainer.model.weight, loop.trainer.model.weight)  # yet
    again.restore()
    assert again.progress == EpochProgress(epoch=4, step=7, loss_sum=2.5, seen=28)
    assert again.history == [{"epoch": 4, "val_f1": 0.6}]
    assert again.best == {"epoch": 3, "monitor": "f1", "value": 0.7}
    assert (again.since_best, again.stopped_early) == (1, True)
    assert again.seconds_before == pytest.approx(state["seconds"])
    for a, b in zip(again.trainer.model.parameters(), loop.trainer.model.parameters(), strict=True):
        assert torch.equal(a, b)
    momentum = again.trainer.optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, loop.trainer.optimizer.state_dict()["state"][0]["momentum_buffer"])
    assert again.scheduler.state_dict() == loop.scheduler.state_dict()
    assert again.scheduler.get_last_lr() == [0.05]


def test_without_last_pt_the_loop_starts_from_nothing(tmp_path):
    loop = epoch_loop(tmp_path)
    (tmp_path / ".metrics.csv.abc.tmp").write_text("half")  # a killed writer's temporary
    loop.restore()
    assert loop.progress == EpochProgress(epoch=0) and loop.history == [] and loop.best is None
    assert not (tmp_path / ".metrics.csv.abc.tmp").exists()


def test_an_old_last_pt_without_the_later_fields_resumes_with_their_defaults(tmp_path):
    loop = epoch_loop(tmp_path)
    state = loop.state()
    for key in ("since_best", "stopped_early", "seconds", "scheduler", "scaler"):
        del state[key]
    save_checkpoint(loop.last_path, state)
    again = epoch_loop(tmp_path)
    again.since_best, again.stopped_early, again.seconds_before = 5, True, 9.0
    again.restore()
    assert (again.since_best, again.stopped_early, again.seconds_before) == (0, False, 0.0)


def test_a_checkpoint_of_another_configuration_or_model_is_refused(tmp_path):
    epoch_loop(tmp_path).save()
    with pytest.raises(
        RunError,
        match=r"last\.pt: this checkpoint belongs to a different conf.*"
        r"; resume with the run's own config\.json, or start a new run$",
    ):
        epoch_loop(tmp_path, fingerprint="other").restore()
    with pytest.raises(
        RunError, match=r"last\.pt: does not fit model 'cnn' \(Error\(s\) in loading"
    ):
        epoch_loop(tmp_path, width=5).restore()
    loop = epoch_loop(tmp_path)
    state = loop.state()
    del state["optimizer"]
    save_checkpoint(loop.last_path, state)
    with pytest.raises(RunError, match=r"does not fit model 'cnn' \('optimizer'\)"):
        epoch_loop(tmp_path).restore()


@pytest.mark.parametrize(
    ("monitor", "best", "value", "improved"),
    [
        ("f1", None, 0.2, True),  # the first epoch with a value
        ("f1", 0.5, 0.6, True),
        ("f1", 0.5, 0.5, False),  # equal is no improvement
        ("f1", 0.5, 0.4, False),
        ("loss", 0.5, 0.4, True),  # lower is better for the loss
        ("loss", 0.5, 0.5, False),
        ("loss", 0.5, 0.6, False),
        ("f1", None, math.nan, True),  # undefined, but nothing better yet
        ("f1", 0.5, math.nan, False),
        ("f1", 0.5, None, False),
        ("f1", None, None, True),
    ],
)
def test_an_epoch_improves_only_on_a_strictly_better_validation_monitor(
    tmp_path, monitor, best, value, improved
):
    loop = epoch_loop(tmp_path, monitor=monitor)
    loop.best = None if best is None else {"epoch": 1, "monitor": monitor, "value": best}
    assert loop._improved({"epoch": 2, f"val_{monitor}": value}) is improved


def test_without_validation_patients_no_epoch_is_an_improvement(tmp_path):
    loop = epoch_loop(tmp_path)
    assert loop._improved({"epoch": 1, "train_loss": 0.3}) is False
    assert loop._improved({"epoch": 1, "val_loss": 0.3}) is False  # not the monitor's column


def test_the_state_is_plain_values_and_tensors_only(tmp_path):
    state = epoch_loop(tmp_path).state()
    assert isinstance(state["model"], collections.OrderedDict | dict)
    assert set(state) >= {"fingerprint", "epoch", "step", "loss_sum", "seen", "optimizer"}
    save_checkpoint(tmp_path / "plain.pt", state)
    assert load_checkpoint(tmp_path / "plain.pt")["epoch"] == 0


def test_a_checkpoint_is_loaded_onto_the_device_asked_for(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"weights": torch.ones(3)})
    assert load_checkpoint(tmp_path / "c.pt")["weights"].device.type == "cpu"
    meta = load_checkpoint(tmp_path / "c.pt", map_location="meta")["weights"]
    assert meta.device.type == "meta" and meta.shape == (3,)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        # torch's wording varies between versions: what it names is quoted when found
        (
            pickle.UnpicklingError("Unsupported global: GLOBAL os.system was not allowed"),
            "os.system",
        ),
        (pickle.UnpicklingError("Weights only load failed: bad opcode"), None),
        (RuntimeError("PytorchStreamReader failed\nsecond line"), "PytorchStreamReader failed"),
        (EOFError(), "EOFError"),
        (OSError("  \n"), "OSError"),
    ],
)
def test_each_reason_to_refuse_a_checkpoint_is_said_in_one_line(tmp_path, monkeypatch, error, said):
    def failing(*args, **kwargs):
        raise error

    (tmp_path / "c.pt").write_bytes(b"x")
    monkeypatch.setattr(torch, "load", failing)
    with pytest.raises(RunError) as info:
        load_checkpoint(tmp_path / "c.pt")
    message = str(info.value)
    assert "\n" not in message
    if isinstance(error, pickle.UnpicklingError):
        expected = f" (it names {said})," if said else " values, and unpickling"
        assert expected in message and "refused to load" in message
    else:
        assert message.endswith(f"c.pt: not a readable checkpoint ({said})")


def test_checkpoints_are_read_with_weights_only_on_every_supported_torch(tmp_path, monkeypatch):
    # torch before 2.6 (the project allows 2.4) unpickles anything unless asked not to
    asked = {}
    real = torch.load

    def spy(*args, **kwargs):
        asked.update(kwargs)
        return real(*args, **kwargs)

    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(tmp_path / "c.pt")
    assert asked.get("weights_only") is True


def scripted(tmp_path, f1s: list[float], *, patience: int, epochs: int = 10) -> EpochLoop:
    """An epoch loop whose validation F1 at each epoch is the next of ``f1s``."""
    loop = epoch_loop(tmp_path)
    loop.cfg.train.patience, loop.cfg.train.epochs = patience, epochs
    loop.cfg.train.precise_bn = loop.cfg.train.test_every_epoch = False
    loop.trainer.recompute_batch_norm = lambda epoch, precise: True
    loop.trainer.data = types.SimpleNamespace(val_idx=[0], test_idx=[])
    loop.trainer.evaluate = lambda idx: None
    scores = iter(f1s[loop.progress.epoch :])
    loop._epoch_scores = lambda split, evaluation: {
        "val_loss": 0.5,
        "val_f1": next(scores),
        **{"val_f1_micro": 0.5, "val_f1_macro": 0.5},  # (the console's epoch line)
    }
    loop.vdir.history_file = tmp_path / "metrics.csv"
    loop.exp.fingerprint = lambda: "abc"
    return loop


def run_epochs(loop: EpochLoop, count: int) -> None:
    for _ in range(count):
        if loop.stopped_early:
            return
        train_a_step(loop)
        loop.end_epoch()


F1S = [0.5, 0.6, 0.6, 0.55, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9]  # best at epoch 2, then 2 worse


def test_patience_stops_after_that_many_epochs_without_a_better_monitor(tmp_path):
    loop = scripted(tmp_path, F1S, patience=2)
    run_epochs(loop, 10)
    assert loop.stopped_early and loop.progress.epoch == 4  # epochs 3 and 4 were no better
    assert loop.best == {"epoch": 2, "monitor": "f1", "value": 0.6}  # counted from 1
    assert load_checkpoint(loop.best_path)["epoch"] == 2
    assert (loop.since_best, len(loop.history)) == (2, 4)
    patient = scripted(tmp_path / "3", F1S, patience=3)
    run_epochs(patient, 10)  # epoch 5 improves in time: on to the end
    assert not patient.stopped_early and patient.progress.epoch == 10
    assert patient.best["epoch"] == 7  # 0.9 first reached; equal later ones are no better
    last = scripted(tmp_path / "last", F1S[:4], patience=2, epochs=4)
    run_epochs(last, 4)  # out of patience at the last epoch: not "stopped early"
    assert not last.stopped_early
    penultimate = scripted(tmp_path / "penultimate", F1S[:5], patience=2, epochs=5)
    run_epochs(penultimate, 5)  # out of patience one epoch before the last: stopped
    assert penultimate.stopped_early and penultimate.progress.epoch == 4


def test_patience_interrupted_after_an_epoch_that_did_not_improve_stops_at_the_same_epoch(
    tmp_path,
):
    loop = scripted(tmp_path, F1S, patience=2)
    run_epochs(loop, 3)  # killed after epoch 3, which was no better than epoch 2
    assert (loop.since_best, loop.stopped_early) == (1, False)
    resumed = scripted(tmp_path, F1S, patience=2)
    resumed.restore()
    assert resumed.progress.epoch == 3
    resumed._epoch_scores = scripted(tmp_path / "x", F1S[3:], patience=2)._epoch_scores
    run_epochs(resumed, 10)
    assert resumed.stopped_early and resumed.progress.epoch == 4
    assert resumed.best["epoch"] == 2


def test_the_learning_rate_recorded_is_the_largest_groups_the_heads(tmp_path):
    # with layer-wise decay the earlier groups' rates are smaller: the head's is reported
    loop = scripted(tmp_path, F1S, patience=2)
    loop.scheduler = None
    head = nn.Parameter(torch.zeros(1))
    loop.trainer.optimizer.add_param_group({"params": [head], "lr": 0.3})
    loop.end_epoch()
    assert loop.history[-1]["lr"] == 0.3
    assert loop.trainer.optimizer.param_groups[0]["lr"] == 0.1


def test_an_epochs_end_records_scores_best_pt_metrics_csv_and_tells_tracker_and_caller(
    tmp_path, capsys
):
    import pandas as pd

    loop = scripted(tmp_path, F1S, patience=2)
    loop.cfg.train.precise_bn, loop.cfg.train.test_every_epoch = 7, True
    asked, evaluated, told, called = [], [], [], []
    loop.trainer.recompute_batch_norm = lambda epoch, batches: asked.append((epoch, batches))
    loop.trainer.data.test_idx = [5, 6]
    loop.trainer.evaluate = lambda idx: evaluated.append(list(idx)) or f"scores of {idx}"
    splits = iter(F1S)
    loop._epoch_scores = lambda split, evaluation: {
        f"{split}_loss": 0.5,
        f"{split}_f1": next(splits),
        f"{split}_f1_micro": 0.5,
        f"{split}_f1_macro": 0.5,
        f"{split}_from": evaluation,
    }
    loop.tracker = types.SimpleNamespace(epoch=lambda epoch, row: told.append((epoch, row)))
    loop.on_epoch = lambda epoch, row: called.append((epoch, dict(row)))
    loop.exp.variant = "gan"
    loop.seconds_before = 100.0  # the time of the run's earlier sessions, resumed
    train_a_step(loop)
    loop.end_epoch()
    # batch norm recomputed over precise_bn batches at this epoch (0-based) ...
    assert asked == [(0, 7)]
    # ... then the validation patients scored, and the test ones for the paper's curves
    assert evaluated == [[0], [5, 6]]
    row = loop.history[0]
    assert (row["epoch"], row["val_from"], row["test_from"]) == (
        1,
        "scores of [0]",
        "scores of [5, 6]",
    )
    assert row["val_f1"] == 0.5 and row["test_f1"] == 0.6
    assert row["lr"] == 0.05  # (the step halved it)
    assert 100 <= row["seconds"] < 160 and isinstance(row["seconds"], float)
    assert row["seconds"] == round(row["seconds"], 3)  # to the millisecond
    # best.pt holds this configuration's fingerprint, the weights and the epoch's numbers
    best = load_checkpoint(loop.best_path)
    assert best["fingerprint"] == "abc" and best["epoch"] == 1
    assert best["model"].keys() == loop.trainer.model.state_dict().keys()
    assert best["metrics"]["val_f1"] == 0.5 and "val_from" not in best["metrics"]
    # metrics.csv: one row per epoch, no index column
    written = pd.read_csv(tmp_path / "metrics.csv")
    assert list(written.columns[:2]) == ["epoch", "train_loss"] and list(written["epoch"]) == [1]
    assert told == [(1, row)] and called == [(1, row)]
    assert "gan epoch 1/10  train loss" in capsys.readouterr().err


def test_batch_norm_statistics_are_agreed_between_ranks_unless_recomputed(tmp_path, monkeypatch):
    from odirkit.engine import distributed

    agreed = []
    monkeypatch.setattr(distributed, "agree_buffers", agreed.append)
    loop = scripted(tmp_path, F1S, patience=2)
    loop.scheduler = None  # no training step here
    loop.trainer.recompute_batch_norm = lambda epoch, batches: False  # precise_bn = 0
    loop.end_epoch()
    agreed_without = len(agreed)
    loop.trainer.recompute_batch_norm = lambda epoch, batches: True
    loop.end_epoch()
    assert agreed_without - (len(agreed) - agreed_without) == 1  # once more without
    assert agreed[0] is loop.trainer.model


def test_stopping_early_is_said_with_the_monitor_patience_and_best_epoch(tmp_path, capsys):
    loop = scripted(tmp_path, F1S, patience=2)
    run_epochs(loop, 10)
    said = " ".join(capsys.readouterr().err.split())
    assert "v: no better validation f1 for 2 epoch(s); stopping early (best: epoch 2)" in said
    assert "v epoch 4/10" in said and "v epoch 5/10" not in said
