"""Patient-level CTC-HER2 positivity rules, defined as data.

A rule counts the CTCs scoring at least ``min_bin`` and compares that count, or its
fraction of all CTCs, with a threshold. A patient with no CTCs is ``not_evaluable``
under every rule, never negative.

Examples
--------
>>> counts = {"0": 5, "1+": 2, "2+": 0, "3+": 4}
>>> RULES["liu"].call(counts), RULES["pestrin"].call(counts), RULES["riethdorf"].call(counts)
('positive', 'positive', 'positive')
>>> parse_rule("2+ fraction >= 0.6").call(counts)
'negative'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction

from ctcimg.channels import HER2_BINS
from ctcimg.errors import InputError

POSITIVE = "positive"
NEGATIVE = "negative"
NOT_EVALUABLE = "not_evaluable"
CALLS = (POSITIVE, NEGATIVE, NOT_EVALUABLE)
_COMPARISONS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True)
class PositivityRule:
    """Patient is positive when (CTCs scoring ≥ ``min_bin``) ``comparison`` ``threshold``.

    Parameters
    ----------
    name
        Short identifier used in tables and on the command line.
    min_bin
        Lowest HER2 bin that counts as stained: "1+", "2+" or "3+" (or "0").
    measure
        ``"fraction"`` of all CTCs, or absolute ``"count"``.
    comparison
        ``">"`` or ``">="``.
    threshold
        Fraction in [0, 1] or a count.
    source
        Where the rule comes from.
    """

    name: str
    min_bin: str
    measure: str
    comparison: str
    threshold: float
    source: str = "custom"

    def __post_init__(self) -> None:
        if self.min_bin not in HER2_BINS:
            raise InputError(f"rule {self.name!r}: bin {self.min_bin!r} is not one of "
                             f"{', '.join(HER2_BINS)}")
        if self.measure not in ("fraction", "count"):
            raise InputError(f"rule {self.name!r}: measure must be 'fraction' or 'count'")
        if self.comparison not in _COMPARISONS:
            raise InputError(f"rule {self.name!r}: comparison must be '>' or '>='")
        if self.measure == "fraction" and not 0 <= self.threshold <= 1:
            raise InputError(f"rule {self.name!r}: a fraction threshold must be in [0, 1]")
        if self.measure == "count" and self.threshold < 0:
            raise InputError(f"rule {self.name!r}: a count threshold must be ≥ 0")

    def call(self, her2_counts: Mapping[str, int]) -> str:
        """``"positive"``, ``"negative"`` or ``"not_evaluable"`` (no CTCs) for bin counts."""
        total = sum(int(her2_counts.get(b, 0)) for b in HER2_BINS)
        if total == 0:
            return NOT_EVALUABLE
        first = HER2_BINS.index(self.min_bin)
        stained = sum(int(her2_counts.get(b, 0)) for b in HER2_BINS[first:])
        # exact rational arithmetic: 3 of 10 CTCs is exactly 30 %, not above it
        value = Fraction(stained, total) if self.measure == "fraction" else Fraction(stained)
        threshold = Fraction(str(self.threshold))
        return POSITIVE if _COMPARISONS[self.comparison](value, threshold) else NEGATIVE

    def describe(self) -> str:
        what = "of CTCs" if self.measure == "fraction" else "CTC(s)"
        amount = (f"{float(self.threshold) * 100:g} %" if self.measure == "fraction"
                  else f"{self.threshold:g}")
        return (f"{self.name}: positive when {self.comparison} {amount} {what} "
                f"score ≥ {self.min_bin}")

    def to_dict(self) -> dict:
        return asdict(self)


RULES: dict[str, PositivityRule] = {
    "liu": PositivityRule("liu", "3+", "fraction", ">", 0.30,
                          "Liu et al.: more than 30 % of CTCs score 3+"),
    "pestrin": PositivityRule("pestrin", "1+", "fraction", ">=", 0.50,
                              "Pestrin et al. 2009: at least 50 % of CTCs show HER2 staining"),
    "riethdorf": PositivityRule("riethdorf", "3+", "count", ">=", 1,
                                "Riethdorf / Ignatiadis: at least one CTC scores 3+"),
}
DEFAULT_RULE = "liu"

_SPEC = re.compile(
    r"^\s*(?:(?P<name>[A-Za-z_][\w-]*)\s*:\s*)?(?P<bin>0|[123]\+?)\s+"
    r"(?P<measure>fraction|count)\s*(?P<cmp>>=|>)\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*$"
)


def parse_rule(spec: str | PositivityRule | Mapping) -> PositivityRule:
    """A built-in rule by name, a rule spec string, a mapping, or a rule itself.

    A spec string reads ``[NAME:] BIN fraction|count >|>= VALUE``, for example
    ``"2+ fraction >= 0.5"`` or ``"strict: 3+ count >= 2"``.
    """
    if isinstance(spec, PositivityRule):
        return spec
    if isinstance(spec, Mapping):
        try:
            return PositivityRule(**spec)
        except TypeError as err:
            raise InputError(f"invalid rule definition {dict(spec)!r}: {err}") from None
    if spec in RULES:
        return RULES[spec]
    match = _SPEC.match(spec)
    if not match:
        raise InputError(
            f"unknown rule {spec!r}: use one of {', '.join(RULES)} or a spec like "
            "'2+ fraction >= 0.5' or 'mine: 3+ count >= 2'"
        )
    bin_label = match["bin"]
    if bin_label != "0" and not bin_label.endswith("+"):
        bin_label += "+"
    return PositivityRule(
        name=match["name"] or spec.strip(),
        min_bin=bin_label,
        measure=match["measure"],
        comparison=match["cmp"],
        threshold=float(match["value"]),
    )
