"""One scoring configuration: everything that shapes a cartridge's result, in one object.

A :class:`ScoringConfig` holds the segmentation, gate, HER2-profile and rule parameters
and the thumbnails flag. It is read from TOML or JSON (:func:`load_config`; a result's
summary.json is a config file too: its ``config`` key), printed with every field
explained by :meth:`ScoringConfig.to_toml` (``ctcimg config``), and recorded in every
summary.json, so ``ctcimg score CARTRIDGE --config results/ID/summary.json`` redoes a
result byte for byte.

Precedence: an option given explicitly (``--rule``, ``--her2-profile``,
``--[no-]thumbnails``, or a keyword of :func:`ctcimg.score_cartridge`) beats the config
file, which beats the defaults; keys a file leaves out keep their defaults.

Examples
--------
>>> config = ScoringConfig.from_dict({"gate": {"min_ck_mean": 60}, "rule": "pestrin"})
>>> config.gate.min_ck_mean, config.rule.name, config.segment == SegmentParams()
(60.0, 'pestrin', True)
>>> ScoringConfig.from_toml(ScoringConfig().to_toml()) == ScoringConfig()
True
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ctcimg.errors import InputError
from ctcimg.gate import GateParams
from ctcimg.her2 import DEFAULT_PROFILE, Her2Profile, load_profile
from ctcimg.rules import DEFAULT_RULE, RULES, PositivityRule, parse_rule
from ctcimg.segment import SegmentParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ScoringConfig:
    """Every parameter that shapes a cartridge's result.

    Attributes
    ----------
    segment : SegmentParams
        Segmentation: background, detection thresholds, refinement, splitting
        (:class:`ctcimg.segment.SegmentParams`).
    gate : GateParams
        Thresholds of the CTC gate (:class:`ctcimg.gate.GateParams`).
    her2_profile : Her2Profile
        HER2 bin edges (:class:`ctcimg.her2.Her2Profile`). In a file: a table, or the
        path of a profile JSON from ``ctcimg calibrate`` (relative to the file).
    rule : PositivityRule
        Rule of the headline patient call (:class:`ctcimg.rules.PositivityRule`). In a
        file: a table, or a built-in name (liu, pestrin, riethdorf) or a spec such as
        "mine: 2+ fraction >= 0.5". Calls under every built-in rule are recorded anyway.
    thumbnails : bool
        Cut 48 x 48 px thumbnails of the CTCs and the rejected CK+ candidates while
        scoring (thumbnails.npz; the review report needs them).
    gate_model : str or None
        Path of a learned gate model from ``ctcimg train`` (hard rules first, then the
        model); in a file, relative to the file; recorded absolute, and the model's
        checksum is recorded in summary.json (``gate_model``). None (left out) scores
        with the threshold gate alone.
    """

    segment: SegmentParams = field(default_factory=SegmentParams)
    gate: GateParams = field(default_factory=GateParams)
    her2_profile: Her2Profile = DEFAULT_PROFILE
    rule: PositivityRule = RULES[DEFAULT_RULE]
    thumbnails: bool = True
    gate_model: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-ready form; :meth:`from_dict` reads it back to an equal config."""
        return {
            "segment": dataclasses.asdict(self.segment),
            "gate": self.gate.to_dict(),
            "her2_profile": self.her2_profile.to_dict(),
            "rule": self.rule.to_dict(),
            "thumbnails": self.thumbnails,
            "gate_model": self.gate_model,
        }

    @classmethod
    def from_dict(cls, data: Mapping, base_dir: str | os.PathLike | None = None
                  ) -> ScoringConfig:
        """A config from a mapping (parsed TOML or JSON); left-out keys keep their defaults.

        Parameters
        ----------
        data
            Keys as in :meth:`to_dict`. ``her2_profile`` may be a profile JSON path
            (relative to ``base_dir``), ``rule`` a rule name or spec string.
        base_dir
            Folder relative paths are resolved against (the config file's).

        Raises
        ------
        InputError
            An unknown key or a bad value, naming the key (e.g. ``gate.min_ck_mean``).
        """
        _check_keys(data, [f.name for f in dataclasses.fields(cls)], "")
        changes: dict = {}
        for name in ("segment", "gate"):
            if name in data:
                changes[name] = _params(_TYPES[name], data[name], name)
        if "her2_profile" in data:
            changes["her2_profile"] = _profile(data["her2_profile"], base_dir)
        if "rule" in data:
            changes["rule"] = _rule(data["rule"])
        if "thumbnails" in data:
            changes["thumbnails"] = _value("thumbnails", "bool", data["thumbnails"])
        if data.get("gate_model") is not None:
            model = data["gate_model"]
            if not isinstance(model, str) or not model.strip():
                raise InputError(f"gate_model: must be a model reference (text), not {model!r}")
            if base_dir is not None and not os.path.isabs(model):  # relative to the file
                model = os.path.abspath(os.path.join(base_dir, model))
            changes["gate_model"] = model
        return cls(**changes)

    @classmethod
    def from_toml(cls, text: str, base_dir: str | os.PathLike | None = None) -> ScoringConfig:
        """A config from TOML text (as :meth:`to_toml` writes)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"not valid TOML ({err})") from None
        return cls.from_dict(data, base_dir)

    def to_toml(self) -> str:
        """The config as TOML, every field preceded by its meaning; parses back equal."""
        header = [
            f"# ctcimg scoring configuration ({_engine()}).",
            "# Use: ctcimg score CARTRIDGE --config FILE, ctcimg batch ARCHIVE -o OUT --config "
            "FILE.",
            "# Keys left out keep their defaults; --rule, --her2-profile and --[no-]thumbnails",
            "# on the command line override this file. Intensities are 12-bit units above the",
            "# background; lengths are in µm unless the name ends in _px.",
            "",
        ]
        lines = [*header, *_toml_fields(ScoringConfig, {"thumbnails": self.thumbnails,
                                                        "gate_model": self.gate_model})]
        profile = {k: v for k, v in self.her2_profile.to_dict().items()
                   if k in ("name", "description", "reference", "edges")
                   or (k == "fitted_from" and v)}
        sections = [("segment", SegmentParams, dataclasses.asdict(self.segment)),
                    ("gate", GateParams, self.gate.to_dict()),
                    ("her2_profile", Her2Profile, profile),
                    ("rule", PositivityRule, self.rule.to_dict())]
        notes = {"her2_profile": "# Or, above the tables: her2_profile = \"profile.json\" "
                                 "(from ctcimg calibrate).",
                 "rule": "# Or, above the tables: rule = \"pestrin\" (a built-in name) or "
                         "rule = \"mine: 2+ fraction >= 0.5\"."}
        for name, cls, values in sections:
            lines += ["", f"[{name}]"]
            if name in notes:
                lines.append(notes[name])
            lines += _toml_fields(cls, values)
        return "\n".join(lines) + "\n"


_TYPES = {"segment": SegmentParams, "gate": GateParams}


def load_config(path: str | os.PathLike) -> ScoringConfig:
    """Read a config file: TOML (``.toml``) or JSON, or a result's summary.json.

    Raises
    ------
    InputError
        The file is missing or unreadable, not valid TOML/JSON, or holds an unknown key
        or a bad value; the message names the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read config ({err.strerror})", path) from None
    except UnicodeDecodeError:
        raise InputError("cannot read config: not UTF-8 text", path) from None
    try:
        if path.suffix.lower() == ".toml":
            return ScoringConfig.from_toml(text, path.parent)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err}); a config file is .toml or .json") \
                from None
        if not isinstance(data, dict):
            raise InputError("a config file holds a table (JSON object) of settings")
        if "result_schema" in data:  # a result's summary.json: the config it was scored with
            if not isinstance(data.get("config"), dict):
                raise InputError("a result summary without a 'config' (written before "
                                 "ctcimg recorded one)")
            data = data["config"]
        return ScoringConfig.from_dict(data, path.parent)
    except InputError as err:
        raise InputError(err.problem, path) from None


def resolve_config(config: ScoringConfig | str | os.PathLike | None = None, *,
                   her2_profile: str | os.PathLike | Her2Profile | None = None,
                   rule: str | PositivityRule | Mapping | None = None,
                   segment_params: SegmentParams | None = None,
                   gate_params: GateParams | None = None,
                   thumbnails: bool | None = None,
                   gate_model: str | os.PathLike | None = None) -> ScoringConfig:
    """``config`` (an object, a file, or the defaults) with the options given (not None)
    put in its place: explicit option > config file > defaults."""
    if config is None:
        config = ScoringConfig()
    elif not isinstance(config, ScoringConfig):
        config = load_config(config)
    changes = {}
    if her2_profile is not None:
        changes["her2_profile"] = load_profile(her2_profile)
    if rule is not None:
        changes["rule"] = parse_rule(rule)
    if segment_params is not None:
        changes["segment"] = segment_params
    if gate_params is not None:
        changes["gate"] = gate_params
    if thumbnails is not None:
        changes["thumbnails"] = bool(thumbnails)
    if gate_model is not None:
        changes["gate_model"] = os.path.abspath(os.fspath(gate_model))
    return dataclasses.replace(config, **changes) if changes else config


# --- reading: validation ---------------------------------------------------------------------


def _check_keys(data, known: list[str], section: str) -> None:
    where = f"{section}: " if section else ""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}expected a table of settings, not {data!r}")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            raise InputError(f"unknown key {section + '.' if section else ''}{key} ({hint})")


def _value(key: str, kind: str, value):
    """``value`` checked against the field type ``kind`` ("float", "int", "bool", "str")."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "float" and is_number:
        return float(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    expected = {"float": "a number", "int": "a whole number", "bool": "true or false",
                "str": "text"}[kind]
    raise InputError(f"{key}: must be {expected}, not {value!r}")


def _params(cls, data, section: str):
    """A SegmentParams / GateParams from a table, each value checked against its field."""
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    _check_keys(data, list(fields), section)
    values = {key: _value(f"{section}.{key}", fields[key], value) for key, value in data.items()}
    try:
        return cls(**values)
    except InputError as err:
        raise InputError(f"{section}: {err.problem}") from None


def _profile(value, base_dir) -> Her2Profile:
    if isinstance(value, str):
        path = Path(value)
        return Her2Profile.load(path if base_dir is None else Path(base_dir) / path)
    try:
        return Her2Profile.from_dict(dict(value) if isinstance(value, Mapping) else value)
    except InputError as err:
        raise InputError(f"her2_profile: {err.problem}") from None


def _rule(value) -> PositivityRule:
    if isinstance(value, str):
        return parse_rule(value)
    fields = {f.name: f.type for f in dataclasses.fields(PositivityRule)}
    _check_keys(value, list(fields), "rule")
    missing = [f.name for f in dataclasses.fields(PositivityRule)
               if f.default is dataclasses.MISSING and f.name not in value]
    if missing:
        raise InputError(f"rule: missing {', '.join(missing)} (or give rule = \"NAME\" or a "
                         f"spec such as \"2+ fraction >= 0.5\")")
    return PositivityRule(**{k: _value(f"rule.{k}", fields[k], v) for k, v in value.items()})


# --- writing: commented TOML -------------------------------------------------------------------


def _engine() -> str:
    from ctcimg import __version__

    return f"ctcimg {__version__}"


def field_docs(cls) -> dict[str, str]:
    """Each field's meaning from the "Attributes" or "Parameters" section of ``cls``'s
    NumPy-style docstring (a shared entry such as ``dapi_k, ck_k`` gives both)."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, str] = {}
    in_section, names, text = False, [], []

    def flush() -> None:
        for name in names:
            docs[name] = " ".join(text)

    for number, line in enumerate(lines):
        underline = number + 1 < len(lines) and set(lines[number + 1].strip()) == {"-"}
        if underline:
            flush()
            in_section, names, text = line.strip() in ("Attributes", "Parameters"), [], []
        elif not in_section or set(line.strip()) == {"-"}:
            continue
        elif line and not line.startswith(" "):
            flush()
            names, text = [n.strip() for n in line.split(" : ")[0].split(",")], []
        elif line.strip():
            text.append(line.strip())
    flush()
    return {name: _plain(doc) for name, doc in docs.items()}


def _plain(doc: str) -> str:
    """Docstring markup to plain text: ``x`` → x, :class:`a.b.C` → a.b.C."""
    doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


def _toml_fields(cls, values: dict) -> list[str]:
    docs = field_docs(cls)
    lines: list[str] = []
    previous = None
    for name, value in values.items():
        doc = docs.get(name, "")
        if doc != previous:
            lines += textwrap.wrap(doc, 92, initial_indent="# ", subsequent_indent="# ",
                                   break_on_hyphens=False)
        previous = doc
        lines.append(f"# {name} = \"MODEL\"" if value is None else f"{name} = {_toml(value)}")
    return lines


def _toml(value) -> str:
    """A TOML value (bool, number, text, array, inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else "inf" if value == math.inf
                else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}"
                               for k, v in value.items()) + "}"
    raise InputError(f"cannot write {value!r} as TOML")
