"""Plugin parameters read from a factory's signature: their names, types and ranges as
`odirkit describe` shows them, strict validation, and the messages that name the file, the
table and the key (test_config.py checks the same through whole experiment files).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import pydantic
import pytest
from pydantic import Field

from odirkit.errors import ConfigError, PluginError
from odirkit.params import (
    REQUIRED,
    Param,
    Where,
    annotation_metadata,
    constraint_text,
    factory_params,
    type_name,
    validate_params,
)

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


def test_where_names_the_file_the_table_and_a_note():
    assert str(Where("exp.toml", "model")) == "exp.toml: [model]"
    assert str(Where(None, "train", "variant 'b'")) == "[train] (variant 'b')"
    assert str(Where("exp.toml", "")) == "exp.toml: [top level]"


def test_ranges_and_lengths_read_as_a_user_writes_them():
    assert constraint_text(annotation_metadata(Probability)) == ">= 0.0, < 1.0"
    assert annotation_metadata(float) == []
    bounds = Annotated[int, Field(gt=0, le=10, multiple_of=2)]
    assert constraint_text(annotation_metadata(bounds)) == "> 0, <= 10, multiple of 2"
    exact = Annotated[list[int], Field(min_length=3, max_length=3)]
    assert constraint_text(annotation_metadata(exact)) == "3 items"
    some = Annotated[list[int], Field(min_length=1, max_length=4)]
    assert constraint_text(annotation_metadata(some)) == "at least 1 item(s), at most 4 item(s)"
    assert constraint_text(annotation_metadata(Annotated[list[int], Field(max_length=2)])) == (
        "at most 2 item(s)"
    )


@pytest.mark.parametrize(
    ("annotation", "name"),
    [
        (float, "float"),
        (Probability, "float (>= 0.0, < 1.0)"),
        (list[int], "list[int]"),
        (dict[str, float], "dict[str, float]"),
        (Literal["sgd", "adam"], "'sgd' | 'adam'"),
        (int | None, "int | None"),
        (Annotated[int, Field(ge=1)] | None, "int (>= 1) | None"),
        (Any, "any"),
        (REQUIRED, "any"),
    ],
)
def test_type_names_are_short_and_readable(annotation, name):
    assert type_name(annotation) == name
    assert Param("x", annotation).type_name == name


def test_a_param_is_required_without_a_default_and_shows_its_range():
    assert Param("p", float).required and not Param("p", float, 0.5).required
    assert Param("p", Probability, 0.5).constraints == ">= 0.0, < 1.0"
    assert Param("p", float).constraints == ""


def factory(
    num_classes: int,
    *,
    dropout: Probability = 0.2,
    name: str,
    extra=None,
    **kwargs: Any,
) -> None:
    """A plugin factory: odirkit supplies num_classes; **kwargs are not parameters."""


class Builder:
    def __init__(self, *, width: int = 4, depth: Annotated[int, Field(ge=1)] = 2) -> None:
        self.width = width


def test_a_factorys_parameters_are_its_keywords_less_those_odirkit_supplies():
    params = factory_params(factory, supplied=["num_classes"])
    assert [p.name for p in params] == ["dropout", "name", "extra"]
    dropout, name, extra = params
    assert dropout.annotation == Probability and dropout.default == 0.2
    assert name.required and name.annotation is str
    assert extra.annotation is Any and extra.default is None  # no hint: anything
    assert factory_params(factory)[0].name == "num_classes"
    built = factory_params(Builder)  # a class: its __init__'s hints, without self
    assert [(p.name, p.default) for p in built] == [("width", 4), ("depth", 2)]
    assert built[1].constraints == ">= 1"


def test_a_factory_that_cannot_be_read_is_a_plugin_error_naming_it():
    def star(*images, size: int = 1):
        return None

    with pytest.raises(PluginError, match=r"test_params\..*star takes \*images; plugin param"):
        factory_params(star)

    def unresolved(*, size: NoSuchType = 1):  # noqa: F821
        return None

    with pytest.raises(PluginError, match=r"cannot resolve the type hints of factory .*unresolved"):
        factory_params(unresolved)
    with pytest.raises(PluginError, match="cannot read the signature of factory"):
        factory_params(3)  # not callable at all


def test_values_are_validated_strictly_and_defaults_filled_in():
    params = factory_params(factory, supplied=["num_classes"])
    where = Where("exp.toml", "model")
    assert validate_params(params, {"name": "x"}, where=where, owner="model 'm'") == {
        "dropout": 0.2,
        "name": "x",
        "extra": None,
    }
    for bad, said in [
        (
            {"name": "x", "dropout": "0.3"},
            "dropout: input should be a valid number, got '0.3' (str)",
        ),
        (
            {"name": "x", "dropout": True},
            "dropout: input should be a valid number, got True (bool)",
        ),
        ({"name": "x", "dropout": 1.0}, "dropout: input should be less than 1, got 1.0 (float)"),
        ({"name": "x", "dropout": math.inf}, "dropout: input should be a finite number"),
        ({"name": 3}, "name: input should be a valid string, got 3 (int)"),
    ]:
        with pytest.raises(ConfigError) as info:
            validate_params(params, bad, where=where, owner="model 'm'")
        assert str(info.value).startswith("exp.toml: [model] ") and said in str(info.value)
        assert str(info.value).endswith(" for model 'm'")


def test_unknown_and_missing_keys_are_named_one_line_each_with_a_suggestion():
    params = factory_params(factory, supplied=["num_classes"])
    with pytest.raises(ConfigError) as info:
        validate_params(params, {"dropuot": 0.1}, where=Where("e.toml", "model"), owner="model 'm'")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert "e.toml: [model] missing required key 'name' for model 'm'" in lines
    assert (
        "e.toml: [model] unknown key 'dropuot' for model 'm' (did you mean 'dropout'?); "
        "valid keys: dropout, extra, name"
    ) in lines
    with pytest.raises(ConfigError, match=r"unknown key 'x'; valid keys: none$"):
        validate_params([], {"x": 1}, where=Where(None, "augment"), owner="")


def test_each_key_is_blamed_on_the_table_that_set_it():
    params = factory_params(factory, supplied=["num_classes"])
    tables = {"dropout": Where("e.toml", "variants.b.model"), "name": Where("e.toml", "model")}
    with pytest.raises(ConfigError) as info:
        validate_params(
            params, {"dropout": 2.0, "name": 1}, where=lambda key: tables[key], owner="model 'm'"
        )
    first, second = str(info.value).splitlines()
    assert first.startswith("e.toml: [variants.b.model] dropout:")
    assert second.startswith("e.toml: [model] name:")


class Camera:
    """A parameter type pydantic knows nothing about."""


def test_a_parameter_of_any_class_takes_an_instance_of_it():
    params = [Param("camera", Camera, None), Param("a", int, 1)]
    camera = Camera()
    got = validate_params(params, {"camera": camera}, where=Where(None, "t"), owner="")
    assert got == {"camera": camera, "a": 1}
    with pytest.raises(ConfigError, match=r"\[t\] camera: input should be an instance of Camera"):
        validate_params(params, {"camera": 3}, where=Where(None, "t"), owner="")


def test_plain_range_objects_strings_and_unbound_methods_are_read_too():
    import functools

    import annotated_types

    assert type_name(Annotated[float, annotated_types.Ge(0)]) == "float (>= 0)"
    assert type_name("Detector") == "Detector"  # a hint left as text

    class Model:
        def build(self, *, depth: int = 2):
            return depth

    assert [p.name for p in factory_params(Model.build)] == ["depth"]  # self is not one

    def star(*images):
        return images

    with pytest.raises(PluginError, match=r"hints of factory functools\.partial\(<function .*star"):
        factory_params(functools.partial(star))


def test_messages_name_the_table_for_a_rule_across_keys_and_the_outer_key_of_a_nested_one():
    from odirkit.config.schema import DataConfig
    from odirkit.params import describe_error, validation_message

    with pytest.raises(pydantic.ValidationError) as info:
        DataConfig(folds=1)
    message = validation_message(info.value, where=Where("e.toml", "data"), valid_keys=[])
    assert message.startswith("e.toml: [data] (table): value error, folds = 1 is no cross")
    assert message.endswith("or 2 or more, got {'folds': 1} (dict)")  # no owner: none named
    params = [Param("weights", dict[str, float], {})]
    seen = []

    def where(key):
        seen.append(key)
        return Where("e.toml", f"model.{key}")

    with pytest.raises(ConfigError, match=r"^e\.toml: \[model\.weights\] weights\.N: input"):
        validate_params(params, {"weights": {"N": "x"}}, where=where, owner="")
    assert seen == ["weights"]
    err = {"type": "extra_forbidden", "msg": "", "input": 1}
    line = describe_error(
        err, where=Where(None, "m"), key="backbone_params.inner.dropuot", valid_keys=["dropout"]
    )
    assert line == (
        "[m] unknown key 'backbone_params.inner.dropuot' (did you mean 'dropout'?); "
        "valid keys: dropout"
    )


def test_params_model_is_strict_about_extra_and_types():
    from odirkit.params import params_model

    model = params_model([Param("a", float, 0.5)])
    with pytest.raises(pydantic.ValidationError):
        model(a="1")
    with pytest.raises(pydantic.ValidationError):
        model(b=1)
    assert model(a=2).a == 2
