"""Prompt name matching: case- and accent-insensitive, whole words only."""

from __future__ import annotations

from gateway.registry.names import NameIndex, fold


def test_fold() -> None:
    assert fold("Zoë") == fold("ZOE") == fold("Zoe\u0308") == "zoe"
    assert fold("Łukasz Ødegård") == "lukasz odegard"
    assert fold("Straße") == "strasse"


def test_accents_case_and_word_boundaries() -> None:
    index = NameIndex([("zoe", "Zoë"), ("ann", "Ann"), ("ob", "O'Brien"), ("mj", "Mary-Jane Watson")])
    assert index.match("a portrait of zoe at sunset") == [("zoe", "zoe")]
    assert index.match("ZOË and Zoe") == [("zoe", "ZOË"), ("zoe", "Zoe")]
    assert index.match("Anne in a garden") == []
    assert index.match("annie, joanna, anna") == []
    assert index.match("ann.") == [("ann", "ann")]
    assert index.match("zoeann") == []
    assert index.match("o brien and O'BRIEN") == [("ob", "o brien"), ("ob", "O'BRIEN")]
    assert index.match("mary jane watson") == [("mj", "mary jane watson")]
    assert index.match("mary watson") == []


def test_aliases_nest_per_subject_but_not_across_subjects() -> None:
    index = NameIndex([("a", "Zoë Saldaña"), ("a", "Zoe"), ("b", "Saldana")])
    assert index.match("zoe saldana") == [("a", "zoe saldana"), ("b", "saldana")]
    assert len(index) == 3
    assert NameIndex([("x", "  "), ("y", "!!")]).match("anything !!") == []
