"""Property-based tests of settings validation: any JSON an operator (or a script) sends for a
slot is either cleaned into the declared kind and range or refused per field, never a crash."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import Operation, SettingField, SettingsInvalid
from providers.registry import all_providers

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)

FIELDS = [
    SettingField(name="n", kind="integer", label="n", minimum=0, maximum=80),
    SettingField(name="x", kind="number", label="x", minimum=0.1, maximum=20),
    SettingField(name="c", kind="choice", label="c", choices=("a", "b")),
    SettingField(name="b", kind="boolean", label="b"),
    SettingField(name="s", kind="string", label="s"),
    SettingField(name="t", kind="template", label="t"),
]


@given(st.sampled_from(FIELDS), JSON)
@settings(max_examples=400)
def test_a_field_cleans_to_its_kind_and_range_or_says_why_not(
    field: SettingField, value: Any
) -> None:
    try:
        cleaned = field.clean(value)
    except ValueError as error:
        assert str(error)  # a message the operator can read
        return
    if field.kind == "integer":
        assert type(cleaned) is int and 0 <= cleaned <= 80
    elif field.kind == "number":
        assert isinstance(cleaned, float) and math.isfinite(cleaned) and 0.1 <= cleaned <= 20
    elif field.kind == "choice":
        assert cleaned in ("a", "b")
    elif field.kind == "boolean":
        assert type(cleaned) is bool
    else:
        assert isinstance(cleaned, str)


OPERATIONS = [
    (provider.id, operation)
    for provider in all_providers().values()
    for operation in provider.operations.values()
]


@given(
    st.sampled_from(OPERATIONS),
    st.dictionaries(st.text(max_size=20), JSON, max_size=6) | JSON,
)
@settings(max_examples=400)
def test_every_operation_validates_any_json_without_crashing(
    operation: tuple[str, Operation], raw: Any
) -> None:
    provider_id, declared = operation
    provider = all_providers()[provider_id]
    try:
        cleaned = provider.clean_settings(declared.id, raw)
    except SettingsInvalid as invalid:
        assert invalid.errors and all(
            isinstance(messages, list) and messages for messages in invalid.errors.values()
        )
        return
    assert set(cleaned) <= {field.name for field in declared.fields}
    # What was accepted is accepted again unchanged (the stored snapshot stays valid).
    assert provider.clean_settings(declared.id, cleaned) == cleaned
