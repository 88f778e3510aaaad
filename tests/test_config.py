"""The scoring configuration: TOML/JSON round trips, validation, precedence, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ctcimg.cli import main
from ctcimg.config import ScoringConfig, field_docs, load_config, resolve_config
from ctcimg.errors import CtcimgError, InputError
from ctcimg.gate import GateParams
from ctcimg.her2 import Her2Profile
from ctcimg.rules import RULES, PositivityRule
from ctcimg.segment import SegmentParams

DEMO_CARTRIDGE = Path(__file__).parent.parent / "fixtures" / "demo" / "SIM000001.1.1"

LAB = ScoringConfig(
    segment=SegmentParams(dapi_k=7.5, smooth=False),
    gate=GateParams(max_diameter_um=30.0, max_nucleus_offset=math.inf),
    her2_profile=Her2Profile(edges=(5.0, 40.0, 150.0), name="lab", reference="leukocytes",
                             fitted_from={"n_events": 120, "n_per_bin": {"0": 60, "3+": 60}}),
    rule=PositivityRule("mine", "2+", "count", ">=", 2),
    thumbnails=False,
)


# --- round trips ----------------------------------------------------------------------------


def test_default_toml_parses_back_to_the_defaults_and_explains_every_field():
    text = ScoringConfig().to_toml()
    assert ScoringConfig.from_toml(text) == ScoringConfig()
    for cls in (ScoringConfig, SegmentParams, GateParams, Her2Profile, PositivityRule):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert len(docs.get(f.name, "")) > 10, (cls.__name__, f.name)
    # every value line is preceded by a comment line (its meaning, or its group's)
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            assert lines[number - 1].startswith("#") or re.match(r"^\w+ = ", lines[number - 1])
    assert "# Smallest background-corrected CK mean over the event.\nmin_ck_mean = 40.0" in text


def test_a_changed_config_round_trips_through_toml_json_and_dict():
    assert ScoringConfig.from_toml(LAB.to_toml()) == LAB
    assert ScoringConfig.from_dict(json.loads(json.dumps(LAB.to_dict()))) == LAB
    assert ScoringConfig.from_dict(LAB.to_dict()).her2_profile.fitted_from == LAB.her2_profile \
        .fitted_from
    assert ScoringConfig.from_toml(LAB.to_toml()).gate.max_nucleus_offset == math.inf


def test_left_out_keys_keep_defaults_and_short_forms_are_read(tmp_path):
    profile = tmp_path / "profiles" / "lab.json"
    profile.parent.mkdir()
    Her2Profile(edges=(10.0, 50.0, 120.0), name="lab").save(profile)
    (tmp_path / "lab.toml").write_text('rule = "pestrin"\nher2_profile = "profiles/lab.json"\n'
                                       "[gate]\nmin_ck_mean = 60\n")
    config = load_config(tmp_path / "lab.toml")
    assert config.rule == RULES["pestrin"]
    assert config.her2_profile.edges == (10.0, 50.0, 120.0)
    assert config.gate == GateParams(min_ck_mean=60.0)
    assert config.segment == SegmentParams() and config.thumbnails is True


def test_json_config_and_a_summary_json_are_config_files(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(LAB.to_dict()))
    assert load_config(tmp_path / "c.json") == LAB
    summary = {"cartridge_id": "X", "result_schema": 1, "ctc_count": 3,
               "config": LAB.to_dict()}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert load_config(tmp_path / "summary.json") == LAB


def test_explicit_options_beat_the_config_file_which_beats_defaults(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(LAB.to_toml())
    assert resolve_config() == ScoringConfig()
    assert resolve_config(path) == LAB
    mixed = resolve_config(path, rule="liu", thumbnails=True)
    assert mixed.rule == RULES["liu"] and mixed.thumbnails is True
    assert mixed.gate == LAB.gate and mixed.her2_profile == LAB.her2_profile


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "needle"), [
    ("[gate]\nmin_ck_mena = 50\n", "unknown key gate.min_ck_mena (did you mean min_ck_mean?)"),
    ("colour = 1\n", "unknown key colour"),
    ("[segment]\ntile_px = 48.5\n", "segment.tile_px: must be a whole number"),
    ("[segment]\nsmooth = 1\n", "segment.smooth: must be true or false"),
    ("[gate]\nmin_ck_mean = \"forty\"\n", "gate.min_ck_mean: must be a number"),
    ("[gate]\nmin_ck_mean = -5\n", "gate: min_ck_mean must be a number >= 0"),
    ("[gate]\nmin_ck_mean = nan\n", "gate: min_ck_mean must be a number >= 0"),
    ("[gate]\nmin_diameter_um = 50\n", "must not exceed max_diameter_um"),
    ("[segment]\nbackground_quantile = 2\n", "segment: background_quantile"),
    ("[her2_profile]\nedges = [50, 10, 100]\n", "her2_profile: HER2 profile"),
    ("[her2_profile]\nedges = [5, 10, 100]\ncolour = 1\n", "her2_profile: unknown"),
    ("[rule]\nname = \"x\"\nmin_bin = \"3+\"\n", "rule: missing measure, comparison"),
    ("rule = \"nonsense\"\n", "unknown rule 'nonsense'"),
    ("thumbnails = \"yes\"\n", "thumbnails: must be true or false"),
    ("gate_model = 3\n", "gate_model: must be a model reference"),
    ("[gate\n", "not valid TOML"),
])
def test_bad_config_is_one_error_naming_the_file_and_key(tmp_path, toml, needle):
    path = tmp_path / "lab.toml"
    path.write_text(toml)
    with pytest.raises(InputError) as err:
        load_config(path)
    message = str(err.value)
    assert needle in message and message.startswith(str(path)) and "\n" not in message


def test_parameter_objects_raise_input_error_which_is_a_value_error():
    assert issubclass(CtcimgError, ValueError)
    with pytest.raises(InputError, match="tile_px"):
        SegmentParams(tile_px=1)
    with pytest.raises(InputError, match="min_circularity"):
        GateParams(min_circularity=1.5)
    with pytest.raises(InputError, match="unknown gate parameter"):
        GateParams.from_dict({"min_ck_mena": 50})


# --- command line ---------------------------------------------------------------------------


def test_cli_config_prints_the_defaults(capsys):
    assert main(["config"]) == 0
    assert ScoringConfig.from_toml(capsys.readouterr().out) == ScoringConfig()


@pytest.mark.parametrize("command", ["score", "batch"])
def test_cli_bad_config_is_one_line_exit_2_nothing_written(tmp_path, capsys, command):
    path = tmp_path / "lab.toml"
    path.write_text("[gate]\nmax_diameter_um = \"big\"\n")
    out = tmp_path / "out"
    assert main([command, str(DEMO_CARTRIDGE), "-o", str(out), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "gate.max_diameter_um" in err
    assert not out.exists()


def test_cli_config_naming_a_missing_gate_model_is_one_line(tmp_path, capsys):
    path = tmp_path / "lab.toml"
    path.write_text('gate_model = "no-such-model.json"\n')
    assert main(["score", str(DEMO_CARTRIDGE), "-o", str(tmp_path / "o"), "--config",
                 str(path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-model.json" in err and "no such gate-model file" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


# --- on the demo cartridge: an edited threshold, and byte-identical reruns --------------------


@pytest.fixture(scope="module")
def default_result():
    from ctcimg.score import score_cartridge

    return score_cartridge(DEMO_CARTRIDGE)


@pytest.mark.slow
def test_edited_config_changes_the_result_and_its_summary_reproduces_it(
        default_result, tmp_path, capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    default_ctcs = default_result.columns["is_ctc"]
    ck_mean = default_result.columns["ck_mean"]
    threshold = float(np.median(ck_mean[default_ctcs]))  # about half the CTCs fall below
    edited = text.replace("min_ck_mean = 40.0", f"min_ck_mean = {threshold!r}")
    assert edited != text
    lab = tmp_path / "lab.toml"
    lab.write_text(edited)

    first = tmp_path / "first"
    assert main(["score", str(DEMO_CARTRIDGE), "--config", str(lab), "--rule", "pestrin",
                 "-o", str(first)]) == 0
    from ctcimg.results import CartridgeResult

    result = CartridgeResult.from_dir(first)
    expected = default_ctcs & (ck_mean >= threshold)
    assert 0 < expected.sum() < default_ctcs.sum()
    np.testing.assert_array_equal(result.columns["is_ctc"], expected)
    dropped = default_ctcs & ~expected
    assert set(result.columns["reject_reason"][dropped]) == {"ck_negative"}
    assert result.config.gate.min_ck_mean == threshold
    assert result.rule == RULES["pestrin"]  # the option beat the file's rule (liu)
    summary = json.loads((first / "summary.json").read_text())
    assert summary["config"]["gate"]["min_ck_mean"] == threshold

    second = tmp_path / "second"
    assert main(["score", str(DEMO_CARTRIDGE), "--config", str(first / "summary.json"),
                 "-o", str(second)]) == 0
    capsys.readouterr()
    for name in ("events.csv", "summary.json", "thumbnails.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert main(["config", "--from", str(first / "summary.json")]) == 0
    assert ScoringConfig.from_toml(capsys.readouterr().out) == result.config
