"""The fast canonical encoder must equal the reference `rfc8785` package byte for byte, and the
query columns must come out of a record the same way at append time and at verify time."""

from __future__ import annotations

import enum
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.canonical import CanonicalizationError, canonical_json, columns_of, prepare, time_us

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_matches_rfc8785_on_random_json(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("number", [
    0.0, -0.0, 1.0, -1.5, 1e-7, 1e-6, 1.5e-7, 0.000001234, 1e16, 1e21, 1e20, 123456789012345680000.0,
    5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 2**53 - 1.0, 100.0,
])
def test_float_formatting_matches_rfc8785(number: float) -> None:
    assert canonical_json({"x": number}) == rfc8785.dumps({"x": number})


def test_known_rfc8785_example() -> None:
    # RFC 8785 section 3.2.3: keys sorted by UTF-16 code units, including non-BMP keys.
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small"}
    out = canonical_json(value).decode()
    keys = list(json.loads(out))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_unusual_types_follow_the_reference() -> None:
    class Colour(str, enum.Enum):  # noqa: UP042 - a str mixin, not StrEnum, on purpose
        RED = "red"

    value = {"c": Colour.RED, "t": (1, 2)}
    assert canonical_json(value) == rfc8785.dumps(value) == b'{"c":"red","t":[1,2]}'


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": 2**53}, {1: "int key"}, {"x": object()},
                                 {"x": "\ud800"}])
def test_non_json_is_rejected(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(bad)


def test_columns_and_subjects() -> None:
    record = {
        "kind": "decision", "tenant": "acme", "use": "face_swap", "decision": "deny",
        "created_at": "2026-11-26T12:00:00+01:00",
        "subjects": ["s-top"],
        "findings": {"faces": [{"matches": [{"subject_id": "s-1"}, {"subject_id": "s-2"}]},
                               {"matches": [{"subject_id": ["s-3", 4]}]}]},
        "note": 'text that says ,"subject_id":"not-a-subject" inside a string',
        "audit": {"index": 99},
    }
    prepared = prepare(record)
    assert b'"audit"' not in prepared.data
    assert prepared.columns.subjects == ("4", "s-1", "s-2", "s-3", "s-top")
    assert prepared.columns.time_us == time_us("2026-11-26T11:00:00Z")
    assert (prepared.columns.kind, prepared.columns.tenant, prepared.columns.use,
            prepared.columns.decision) == ("decision", "acme", "face_swap", "deny")
    # The verifier reads the stored text back; it must derive the same columns.
    text = prepared.data.decode()
    assert columns_of(text, json.loads(text)) == prepared.columns


def test_columns_from_enum_values_match_the_verifiers_view() -> None:
    class Kind(str, enum.Enum):  # noqa: UP042 - a str mixin, not StrEnum, on purpose
        DECISION = "decision"

    prepared = prepare({"kind": Kind.DECISION, "tenant": Kind.DECISION})
    text = prepared.data.decode()
    assert prepared.columns == columns_of(text, json.loads(text))
    assert prepared.columns.tenant == "decision"


def test_record_needs_a_kind() -> None:
    with pytest.raises(CanonicalizationError):
        prepare({"tenant": "acme"})


def test_time_parsing() -> None:
    assert time_us("1970-01-01T00:00:01Z") == 1_000_000
    assert time_us("1970-01-01T00:00:00.000001") == 1
    assert time_us("not a time") is None
    assert time_us(12) is None


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_prepare_matches_rfc8785_and_the_verifiers_columns(value: object) -> None:
    # The append path's orjson encoder (with its fall-backs) against the reference, for records
    # holding any JSON value; the columns must be the verifier's (parsed from the stored text).
    record = {"kind": "decision", "v": value, "tenant": "acme"}
    prepared = prepare(record)
    assert prepared.data == rfc8785.dumps(record)
    text = prepared.data.decode()
    assert prepared.columns == columns_of(text, json.loads(text))


@pytest.mark.parametrize("value", [
    1.0, -0.0, 0.0, [1.0, -2.0, 3.5], 1e16, 1e20, 1e21, 1e-7, 1.5e-6, 2**53 - 1, -(2**53) + 1,
    "a,1.0,b", ",1.0]", "caf\u00e9", {"\u00e9": 1}, (1, 2), {"x": (1.0,)},
])
def test_prepare_edge_values_match_rfc8785(value: object) -> None:
    record = {"kind": "decision", "v": value}
    assert prepare(record).data == rfc8785.dumps(record)


@pytest.mark.parametrize("bad", [2**53, -(2**53), float("nan"), float("inf"), "\ud800", object()])
def test_prepare_refuses_what_the_reference_refuses(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        prepare({"kind": "decision", "v": bad})


def test_the_orjson_path_takes_a_gateway_shaped_record() -> None:
    # The fast path must really run for the records the gateway writes (else #21.1's figures
    # would measure the Python encoder): plain types, integral float scores included.
    from gateway.audit.canonical import _orjson_canonical

    record = {"kind": "decision", "decision_id": "ab" * 16, "tenant": "acme", "created_at": "2026-11-26T14:00:00Z",
              "findings": {"nsfw": [{"scores": {"x": 0.0, "y": 1.0, "z": 0.25}}],
                           "faces": [{"bbox": [1, 2.0, 30.5, 40], "matches": [{"subject_id": "s1"}]}]}}
    fast = _orjson_canonical(record)
    assert fast is not None and fast[0] == rfc8785.dumps(record)
    assert b'"x":0,"y":1,' in fast[0]
