"""Experiment files: parsing, validation messages, overrides and variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from odirkit.config import load_experiment, parse_override
from odirkit.errors import ConfigError, PluginError


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path, registry, text, **kw):
    return load_experiment(write(tmp_path, text), registry, **kw)


def test_defaults_are_filled_in_and_the_model_fixes_the_image_size(tmp_path, registry):
    (exp,) = load(tmp_path, registry, 'name = "x"\n')
    assert exp.variant == "default"
    assert exp.config.data.dataset == "phantom"
    assert exp.image_size == 512  # the cnn's own input size
    assert exp.model.params["input_size"] == 512
    assert exp.labels == list("NDGCAHMO")
    resolved = exp.to_dict()
    assert resolved["data"]["patients"] == 400  # the phantom's default
    assert resolved["train"]["epochs"] == 10


def test_data_image_size_reaches_a_model_that_takes_one(tmp_path, registry):
    (exp,) = load(tmp_path, registry, 'name = "x"\n[data]\nimage_size = 96\n')
    assert exp.model.params["input_size"] == 96


def test_name_defaults_to_the_file_stem(tmp_path, registry):
    (exp,) = load_experiment(write(tmp_path, "seed = 3\n", "my_study.toml"), registry)
    assert exp.name == "my_study"


def test_syntax_error_names_file_line_and_column(tmp_path, registry):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, registry, 'name = "x"\n[train]\nepochs = \n')
    message = str(info.value)
    assert "exp.toml" in message and "line 3" in message and "column" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[train]\nepoch = 3\n", "[train] unknown key 'epoch' (did you mean 'epochs'?)"),
        ('[train]\nepochs = "ten"\n', "[train] epochs: input should be a valid integer"),
        ("[trian]\n", "[top level] unknown key 'trian' (did you mean 'train'?)"),
        ('[data]\nlabels = ["N", "X"]\n', "[data] labels.1: input should be 'N'"),
        ("[data]\ntest_fraction = 1.5\n", "[data] test_fraction: input should be less than 1"),
        ("[train]\nepochs = -2\n", "[train] epochs: input should be greater than or equal to 1"),
        ('[model]\nname = "cnm"\n', "[model] unknown model 'cnm' (did you mean 'cnn'?)"),
        ("[model]\ndropuot = 0.1\n", "[model] unknown key 'dropuot' for model 'cnn' (did you mean"),
        ('[model]\nwidths = [1, "a"]\n', "[model] widths.1: input should be a valid integer"),
        (
            '[data]\ndataset = "phantm"\n',
            "[data] unknown dataset 'phantm' (did you mean 'phantom'?)",
        ),
        ("[data]\npatients = 2.5\n", "[data] patients: input should be a valid integer"),
        ("augment = [{ strength = 1 }]\n", "[augment.0] each augment entry needs name"),
        ('augment = [{ name = "nope" }]\n', "[augment.0] unknown augmenter 'nope'"),
        ('device = "gpu"\n', "[top level] device: string should match pattern"),
        ("[eval]\nconfidence = 1.0\n", "[eval] confidence: input should be less than 1"),
        ("[eval]\nconfidence = 0\n", "[eval] confidence: input should be greater than 0.5"),
        ("[eval]\nconfidence = -0.9\n", "[eval] confidence: input should be greater than 0.5"),
        (
            '[model]\ndropout = "0.3"\n',
            "[model] dropout: input should be a valid number, got '0.3'",
        ),
        ("[model]\ndropout = true\n", "[model] dropout: input should be a valid number, got True"),
        ("[model]\npool = true\n", "[model] pool: input should be a valid integer, got True"),
        ('[model]\npool = "2"\n', "[model] pool: input should be a valid integer, got '2'"),
        ("[model]\npool = 2.0\n", "[model] pool: input should be a valid integer, got 2.0"),
        ("[data]\ndifficulty = 1\n", "[data] difficulty: input should be"),
        ("[model]\nbatch_norm = 1\n", "[model] batch_norm: input should be a valid boolean, got 1"),
        (
            'augment = [{ name = "classic", noise_p = "0.3" }]\n',
            "[augment.0] noise_p: input should be a valid number, got '0.3' (str)",
        ),
    ],
)
def test_bad_values_name_file_table_and_key(tmp_path, registry, text, expected):
    with pytest.raises((ConfigError, PluginError)) as info:
        load(tmp_path, registry, 'name = "x"\n' + text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "exp.toml") + ": "), message
    assert expected in message


def test_set_overrides_any_key_with_toml_values(tmp_path, registry):
    (exp,) = load(
        tmp_path,
        registry,
        'name = "x"\n',
        overrides=[
            "train.epochs=2",
            'data.labels=["N", "D"]',
            "data.root=some/where",
            "model.dropout=0.5",
            "train.optimizer=adam",
        ],
    )
    assert exp.config.train.epochs == 2
    assert exp.labels == ["N", "D"]
    assert exp.config.data.root == "some/where"
    assert exp.model.params["dropout"] == 0.5
    assert exp.config.train.optimizer == "adam"


def test_a_bad_override_says_it_came_from_set(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"\[train\] \(from --set\) epochs"):
        load(tmp_path, registry, 'name = "x"\n', overrides=["train.epochs=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load(tmp_path, registry, 'name = "x"\n', overrides=["train.epochs"])


@pytest.mark.parametrize(
    ("text", "override", "where"),
    [
        ("[launcher]\njobs = 0\n", None, r"\[launcher\] jobs: input should be greater"),
        ("", "launcher.jobs=0", r"\[launcher\] \(from --set\) jobs"),
        ("", "tune.trials=3", r"\[tune\] \(from --set\) unknown key 'trials'"),
        ("[eval]\nconfidence = 2\n", None, r"\[eval\] confidence"),
    ],
)
def test_an_error_in_any_core_table_names_that_table(tmp_path, registry, text, override, where):
    with pytest.raises(ConfigError, match=where):
        load(tmp_path, registry, 'name = "x"\n' + text, overrides=[override] if override else [])


def test_parse_override_keeps_unquoted_text_as_a_string():
    assert parse_override("data.root=data/odir5k") == (["data", "root"], "data/odir5k")
    assert parse_override("data.root=[2024] odir") == (["data", "root"], "[2024] odir")


@pytest.mark.parametrize("value", ['{ "0" = N }', "[N, D]", '{ "0" = "N" '])
def test_a_table_or_list_that_is_not_toml_says_so(value):
    # taken as a string, it failed later as "input should be a valid dictionary"
    with pytest.raises(ConfigError, match="not a valid TOML inline table or list") as caught:
        parse_override(f"data.mapping={value}")
    assert f"--set 'data.mapping={value}'" in str(caught.value)
    assert 'e.g. --set \'data.mapping={ "0" = "N", "1-4" = "D" }\'' in str(caught.value)
    assert parse_override("augment.0.p=0.5") == (["augment", 0, "p"], 0.5)
    assert parse_override("train.deterministic=true") == (["train", "deterministic"], True)


VARIANTS = """
name = "x"
[train]
epochs = 5
lr = 0.1
[variants.default]
[variants.short]
train = { epochs = 1 }
[variants.other_model]
model = { dropout = 0.5 }
"""


def test_variants_merge_onto_the_base(tmp_path, registry):
    experiments = load(tmp_path, registry, VARIANTS)
    by_name = {e.variant: e for e in experiments}
    assert list(by_name) == ["default", "short", "other_model"]
    assert by_name["default"].config.train.epochs == 5
    assert by_name["short"].config.train.epochs == 1
    assert by_name["short"].config.train.lr == 0.1  # untouched keys keep the base value
    assert by_name["other_model"].model.params["dropout"] == 0.5
    assert by_name["default"].model.params["dropout"] == 0.25


def test_set_applies_to_every_variant_and_variant_keys_to_one(tmp_path, registry):
    experiments = load(
        tmp_path, registry, VARIANTS, overrides=["train.epochs=2", "variants.short.train.lr=0.5"]
    )
    by_name = {e.variant: e for e in experiments}
    assert {e.config.train.epochs for e in experiments} == {2}
    assert by_name["short"].config.train.lr == 0.5
    assert by_name["default"].config.train.lr == 0.1


def test_choosing_variants(tmp_path, registry):
    experiments = load(tmp_path, registry, VARIANTS, variants=["short"])
    assert [e.variant for e in experiments] == ["short"]
    with pytest.raises(ConfigError, match=r"no variant 'shrt' \(did you mean 'short'\?\)"):
        load(tmp_path, registry, VARIANTS, variants=["shrt"])


def test_an_error_inside_a_variant_names_the_variant_table(tmp_path, registry):
    text = 'name = "x"\n[variants.a]\ntrain = { epochs = -1 }\n'
    with pytest.raises(ConfigError, match=r"\[variants\.a\.train\] epochs"):
        load(tmp_path, registry, text)


def test_resolved_config_is_itself_a_valid_experiment(tmp_path, registry):
    from odirkit.config import resolve_document

    (exp,) = load(tmp_path, registry, VARIANTS, variants=["other_model"])
    (again,) = resolve_document(exp.to_dict(), registry, source="config.json")
    assert again.fingerprint() == exp.fingerprint()


def test_a_toml_file_cannot_name_an_import_path(tmp_path, registry):
    with pytest.raises(PluginError, match=r"unknown model 'os\.system'"):
        load(tmp_path, registry, 'name = "x"\n[model]\nname = "os.system"\n')


def test_a_file_with_a_byte_order_mark_is_read(cli, tmp_path, phantom_root):
    from conftest import tiny_experiment

    exp = tmp_path / "exp.toml"
    exp.write_bytes(b"\xef\xbb\xbf" + tiny_experiment(phantom_root).encode("utf-8"))
    result = cli("validate", exp)
    assert result.exit_code == 0, result.output
    assert "ok tiny/default" in result.stdout


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("data.root=2024-06-01", "root", "2024-06-01"),
        ("data.cache_dir=2024-06-01T10:00:00", "cache_dir", "2024-06-01T10:00:00"),
        ("data.split_file=10:30:00", "split_file", "10:30:00"),
    ],
)
def test_a_value_toml_reads_as_a_date_keeps_its_text(tmp_path, registry, override, key, text):
    assert parse_override(override)[1] == text
    (exp,) = load(tmp_path, registry, 'name = "x"\n', overrides=[override])
    assert getattr(exp.config.data, key) == text
    assert parse_override("train.epochs=3")[1] == 3  # numbers stay numbers
