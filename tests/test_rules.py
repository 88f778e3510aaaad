"""Positivity rules: the three published rules at their boundaries, custom rules, 0 CTCs."""

from __future__ import annotations

import pytest

from ctcimg.errors import InputError
from ctcimg.rules import RULES, PositivityRule, parse_rule


def counts(n0=0, n1=0, n2=0, n3=0):
    return {"0": n0, "1+": n1, "2+": n2, "3+": n3}


@pytest.mark.parametrize("rule", list(RULES))
def test_no_ctcs_is_not_evaluable_never_negative(rule):
    assert RULES[rule].call(counts()) == "not_evaluable"


@pytest.mark.parametrize(("bins", "expected"), [
    (counts(7, 0, 0, 3), "negative"),     # exactly 30 % is not more than 30 %
    (counts(6, 0, 0, 4), "positive"),
    (counts(69, 0, 0, 31), "positive"),
    (counts(0, 5, 5, 0), "negative"),     # 1+ and 2+ do not count for liu
])
def test_liu_more_than_30_percent_3plus(bins, expected):
    assert RULES["liu"].call(bins) == expected


@pytest.mark.parametrize(("bins", "expected"), [
    (counts(5, 5, 0, 0), "positive"),     # exactly 50 % stained
    (counts(6, 2, 1, 1), "negative"),
    (counts(1, 0, 0, 1), "positive"),
])
def test_pestrin_at_least_half_stained(bins, expected):
    assert RULES["pestrin"].call(bins) == expected


@pytest.mark.parametrize(("bins", "expected"), [
    (counts(99, 0, 0, 1), "positive"),
    (counts(10, 10, 10, 0), "negative"),
])
def test_riethdorf_any_3plus(bins, expected):
    assert RULES["riethdorf"].call(bins) == expected


def test_custom_rule_from_spec_and_mapping():
    rule = parse_rule("mine: 2 fraction > 0.25")
    assert (rule.name, rule.min_bin, rule.measure, rule.comparison, rule.threshold) == (
        "mine", "2+", "fraction", ">", 0.25)
    assert rule.call(counts(3, 0, 1, 0)) == "negative"
    assert rule.call(counts(2, 0, 1, 1)) == "positive"
    same = parse_rule(rule.to_dict())
    assert same == rule


@pytest.mark.parametrize("spec", ["nonsense", "4+ fraction > 0.3", "3+ fraction > 1.5",
                                  "3+ ratio > 0.3"])
def test_bad_rule_specs_are_refused(spec):
    with pytest.raises(InputError):
        parse_rule(spec)


def test_rule_validates_its_fields():
    with pytest.raises(InputError, match="comparison"):
        PositivityRule("x", "3+", "count", "<", 1)
