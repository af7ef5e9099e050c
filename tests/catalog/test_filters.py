"""The cohort filter language: parsing, validation and compilation to bound parameters."""

from __future__ import annotations

import pytest

from oncofed.catalog.filters import compile_filter, parse_cli_terms, parse_filter
from oncofed.errors import QueryError


def test_cli_terms_become_a_filter() -> None:
    raw = parse_cli_terms(["modality=MR,CT", "age=50..70", "label:isup_grade=3,4", "age=..40"])
    assert raw == {"modality": ["MR", "CT"], "age": "..40", "label:isup_grade": ["3", "4"]}


def test_values_are_canonicalised_and_fields_sorted() -> None:
    conditions = parse_filter({"sex": "f", "modality": ["mr", "CT", "mr"], "age": "50..70"})
    assert [c.field for c in conditions] == ["age", "modality", "sex"]
    assert conditions[1].values == ("MR", "CT")
    assert (conditions[0].low, conditions[0].high) == (50.0, 70.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": ["red"]}, "unknown field 'colour'; valid fields: collection, cancer_type"),
        ({"age": [70, 50]}, "empty range"),
        ({"age": ["old", 5]}, "'old' is not a number"),
        ({"age": [None, None]}, "at least one bound"),
        ({"age": [1, float("nan")]}, "not a finite number"),
        ({"modality": []}, "non-empty list"),
        ({"modality": [""]}, "empty value"),
        ({"modality": [{"$ne": 1}]}, "values must be strings or numbers"),
        ({"label:ISUP; DROP": ["1"]}, "invalid label kind"),
        (["modality"], "must be an object"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_filter(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("term", ["modality", "=MR", "modality=", "age=50..x"])
def test_bad_cli_terms_are_refused(term: str) -> None:
    with pytest.raises(QueryError):
        parse_filter(parse_cli_terms([term]))


def test_user_values_never_reach_the_sql_text() -> None:
    hostile = "' OR 1=1 --"
    compiled = compile_filter(
        parse_filter(
            {
                "collection": [hostile],
                "manufacturer": [hostile],
                "cancer_type": [hostile],
                "label:grade": [hostile],
            }
        )
    )
    assert "1=1" not in compiled.where
    assert hostile in compiled.params
    assert "%' or 1=1 --%" in compiled.params


def test_like_wildcards_in_values_are_literal() -> None:
    compiled = compile_filter(parse_filter({"manufacturer": ["50%_off"]}))
    assert compiled.params == ("%50\\%\\_off%",)
