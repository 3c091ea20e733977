"""Slot settings validated against each operation's declared schema, with per-field errors."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from providers.base import Operation, Provider, SettingField, SettingsInvalid
from providers.local import LocalProvider
from providers.registry import all_providers, get_provider

LOCAL = LocalProvider()

# An operation declaring one field of each kind, like a remote provider's would.
EDIT = Operation(
    id="image_edit",
    label="Image edit",
    fields=(
        SettingField(name="prompt", kind="text", label="Prompt", required=True),
        SettingField(name="model", kind="string", label="Model", default="gemini-2.5-flash-image"),
        SettingField(name="aspect_ratio", kind="choice", label="Aspect", choices=("1:1", "3:2")),
        SettingField(
            name="strength", kind="number", label="Strength", default=40, minimum=0, maximum=80
        ),
        SettingField(name="seed", kind="integer", label="Seed", minimum=0),
        SettingField(name="scale", kind="number", label="Guidance scale"),
        SettingField(name="face_restore", kind="boolean", label="Face restore", default=False),
        SettingField(name="style_media_id", kind="template", label="Style"),
    ),
)


def errors_of(operation: Operation, settings: Any) -> dict[str, list[str]]:
    with pytest.raises(SettingsInvalid) as raised:
        operation.clean_settings(settings)
    errors = raised.value.errors
    assert all(isinstance(messages, list) and messages for messages in errors.values())
    assert all(isinstance(message, str) for messages in errors.values() for message in messages)
    return errors


# --- defaults and valid values -------------------------------------------------------------------


def test_missing_settings_take_their_defaults() -> None:
    assert LOCAL.clean_settings("photo_look", {}) == {"look": "vintage", "jpeg_quality": 90}
    assert LOCAL.clean_settings("frame_overlay", {"frame_media_id": "abc"}) == {
        "frame_media_id": "abc",
        "fit": "stretch",
        "look": "none",
        "jpeg_quality": 90,
    }


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_value_counts_as_missing_and_takes_the_default(empty: Any) -> None:
    assert LOCAL.clean_settings("photo_look", {"look": empty}) == {
        "look": "vintage",
        "jpeg_quality": 90,
    }


def test_valid_settings_are_kept_in_their_kind() -> None:
    cleaned = EDIT.clean_settings(
        {
            "prompt": "make it a watercolour",
            "aspect_ratio": "3:2",
            "strength": 25,
            "seed": 7,
            "face_restore": True,
            "style_media_id": "  6f1c2a  ",
        }
    )

    assert cleaned == {
        "prompt": "make it a watercolour",
        "model": "gemini-2.5-flash-image",
        "aspect_ratio": "3:2",
        "strength": 25.0,
        "seed": 7,
        "face_restore": True,
        "style_media_id": "6f1c2a",
    }
    assert isinstance(cleaned["strength"], float)
    assert isinstance(cleaned["seed"], int)


def test_false_and_zero_are_values_not_missing() -> None:
    cleaned = EDIT.clean_settings({"prompt": "x", "face_restore": False, "strength": 0, "seed": 0})

    assert cleaned["face_restore"] is False
    assert cleaned["strength"] == 0.0
    assert cleaned["seed"] == 0


def test_optional_setting_without_default_is_left_out() -> None:
    cleaned = EDIT.clean_settings({"prompt": "x"})

    assert "aspect_ratio" not in cleaned and "seed" not in cleaned


# --- refusals, one message per field -------------------------------------------------------------


def test_unknown_settings_are_refused_by_name() -> None:
    errors = errors_of(LOCAL.operation("photo_look"), {"look": "sepia", "colour": "red"})

    assert set(errors) == {"colour"}
    assert "unknown" in errors["colour"][0]


@pytest.mark.parametrize("missing", [{}, {"frame_media_id": ""}, {"frame_media_id": None}])
def test_a_required_setting_without_default_must_be_given(missing: dict[str, Any]) -> None:
    errors = errors_of(LOCAL.operation("frame_overlay"), missing)

    assert set(errors) == {"frame_media_id"}
    assert "required" in errors["frame_media_id"][0]


def test_a_choice_outside_the_list_is_refused_with_the_allowed_values() -> None:
    errors = errors_of(LOCAL.operation("photo_look"), {"look": "purple"})

    assert set(errors) == {"look"}
    for look in ("black_and_white", "sepia", "vintage", "vivid"):
        assert look in errors["look"][0]


def test_photo_look_offers_no_look_that_does_nothing() -> None:
    assert set(errors_of(LOCAL.operation("photo_look"), {"look": "none"})) == {"look"}
    assert LOCAL.clean_settings("frame_overlay", {"frame_media_id": "a", "look": "none"})


@pytest.mark.parametrize(
    ("quality", "accepted"), [(49, False), (50, True), (95, True), (96, False)]
)
def test_numbers_must_be_within_their_bounds(quality: int, accepted: bool) -> None:
    operation = LOCAL.operation("photo_look")
    if accepted:
        assert operation.clean_settings({"jpeg_quality": quality})["jpeg_quality"] == quality
    else:
        errors = errors_of(operation, {"jpeg_quality": quality})
        assert set(errors) == {"jpeg_quality"}
        assert ("at least 50" if quality < 50 else "at most 95") in errors["jpeg_quality"][0]


@pytest.mark.parametrize(("strength", "message"), [(-0.5, "at least 0"), (80.01, "at most 80")])
def test_fractional_numbers_are_bounded_too(strength: float, message: str) -> None:
    errors = errors_of(EDIT, {"prompt": "x", "strength": strength})

    assert message in errors["strength"][0]


def test_an_integer_setting_refuses_fractions_but_takes_whole_floats() -> None:
    operation = LOCAL.operation("photo_look")

    assert "whole number" in errors_of(operation, {"jpeg_quality": 80.5})["jpeg_quality"][0]
    cleaned = operation.clean_settings({"jpeg_quality": 80.0})
    assert cleaned["jpeg_quality"] == 80 and isinstance(cleaned["jpeg_quality"], int)


def test_a_number_setting_takes_fractions() -> None:
    assert EDIT.clean_settings({"prompt": "x", "strength": 12.5})["strength"] == 12.5


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(value: bool) -> None:
    errors = errors_of(EDIT, {"prompt": "x", "strength": value, "seed": value})

    assert set(errors) == {"strength", "seed"}
    assert errors["strength"] == ["must be a number"]


@pytest.mark.parametrize("value", ["80", [80], {"value": 80}])
def test_numbers_given_as_other_types_are_refused(value: Any) -> None:
    errors = errors_of(LOCAL.operation("photo_look"), {"jpeg_quality": value})

    assert errors["jpeg_quality"] == ["must be a number"]


@pytest.mark.parametrize("value", ["true", 1, 0])
def test_a_boolean_setting_takes_only_true_or_false(value: Any) -> None:
    errors = errors_of(EDIT, {"prompt": "x", "face_restore": value})

    assert errors["face_restore"] == ["must be true or false"]


@pytest.mark.parametrize("value", [42, ["a"], {"text": "a"}])
def test_text_settings_must_be_strings(value: Any) -> None:
    errors = errors_of(EDIT, {"prompt": value})

    assert errors["prompt"] == ["must be a string"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(
            "strength",
            math.nan,
            id="number-nan",
        ),
        pytest.param(
            "seed",
            math.inf,
            id="integer-infinity",
        ),
        pytest.param(
            "scale",
            math.inf,
            id="unbounded-number-infinity",
        ),
        pytest.param("seed", math.nan, id="integer-nan"),
        pytest.param("strength", math.inf, id="number-infinity-above-maximum"),
    ],
)
def test_numbers_that_are_not_finite_are_refused_per_field(field: str, value: float) -> None:
    # Accepted, NaN/Infinity cannot be stored: the slot's JSON column refuses them (a 500, not a
    # field error), on PostgreSQL and on SQLite alike.
    errors = errors_of(EDIT, {"prompt": "x", field: value})

    assert set(errors) == {field}


def test_every_bad_field_is_reported_at_once() -> None:
    errors = errors_of(
        EDIT,
        {"strength": 200, "aspect_ratio": "5:1", "face_restore": "yes", "colour": "red"},
    )

    assert set(errors) == {"prompt", "strength", "aspect_ratio", "face_restore", "colour"}


def test_the_error_message_names_each_field() -> None:
    with pytest.raises(SettingsInvalid) as raised:
        EDIT.clean_settings({"strength": 200})

    assert "prompt:" in str(raised.value) and "strength:" in str(raised.value)


@pytest.mark.parametrize("not_an_object", [["look", "sepia"], "look=sepia", 42])
def test_settings_must_be_a_json_object(not_an_object: Any) -> None:
    errors = errors_of(LOCAL.operation("photo_look"), not_an_object)

    assert set(errors) == {"settings_json"}


def test_an_unknown_operation_is_refused_on_the_operation_field() -> None:
    with pytest.raises(SettingsInvalid) as raised:
        LOCAL.clean_settings("face_swap", {})

    assert set(raised.value.errors) == {"operation_id"}
    assert "face_swap" in raised.value.errors["operation_id"][0]


# --- registry and descriptions -------------------------------------------------------------------


def test_registry_finds_configured_providers_by_id() -> None:
    assert isinstance(get_provider("local"), LocalProvider)
    assert get_provider("local") is get_provider("local")
    assert {"local", "testing"} <= set(all_providers())


def test_an_unknown_provider_is_refused_on_the_provider_field() -> None:
    with pytest.raises(SettingsInvalid) as raised:
        get_provider("dall-e-9")

    assert set(raised.value.errors) == {"provider_id"}
    assert "dall-e-9" in raised.value.errors["provider_id"][0]


@pytest.mark.parametrize("provider_id", sorted(all_providers()))
def test_provider_description_is_json_and_lists_every_operation_setting(provider_id: str) -> None:
    provider: Provider = get_provider(provider_id)

    description = provider.describe()

    assert json.loads(json.dumps(description)) == description
    assert description["id"] == provider_id
    assert [op["id"] for op in description["operations"]] == list(provider.operations)
    for described in description["operations"]:
        operation = provider.operations[described["id"]]
        assert [s["name"] for s in described["settings"]] == [f.name for f in operation.fields]


def test_local_provider_description_tells_the_form_what_to_offer() -> None:
    description = LOCAL.describe()

    assert description["requires_api_key"] is False
    assert description["accepted_mimes"] == ["image/jpeg", "image/png", "image/webp"]
    [photo_look] = [op for op in description["operations"] if op["id"] == "photo_look"]
    look, quality = photo_look["settings"]
    assert look["kind"] == "choice" and look["required"] is True and look["default"] == "vintage"
    assert look["choices"] == ["black_and_white", "sepia", "vintage", "vivid"]
    assert quality == {
        "name": "jpeg_quality",
        "kind": "integer",
        "label": "JPEG quality",
        "required": False,
        "default": 90,
        "choices": [],
        "minimum": 50,
        "maximum": 95,
        "help_text": "Quality of JPEG results (PNG photos stay PNG).",
    }
