"""DefenceConfig: defaults, .env and JSON files, the environment, and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from zerotrustml.defence.config import DefenceConfig, parse_env_file
from zerotrustml.exceptions import ParameterError

ISSUE_DEFAULTS = {
    "LABEL_SKEW_COS_MIN": -0.5,
    "LABEL_SKEW_COS_MAX": 0.95,
    "BEHAVIOR_RECOVERY_THRESHOLD": 2,
    "BEHAVIOR_RECOVERY_BONUS": 0.12,
    "COMMITTEE_SIZE": 5,
}


def test_defaults_are_the_issues_values() -> None:
    config = DefenceConfig.load(environ={})
    assert config == DefenceConfig()
    for key, value in ISSUE_DEFAULTS.items():
        assert getattr(config, key.lower()) == value
    assert isinstance(config.behavior_recovery_threshold, int)
    assert isinstance(config.label_skew_cos_min, float)


def test_field_names_are_the_lower_case_env_names() -> None:
    names = DefenceConfig.names()
    assert set(ISSUE_DEFAULTS) <= set(names)
    assert [f.name for f in dataclasses.fields(DefenceConfig)] == [n.lower() for n in names]
    for f in dataclasses.fields(DefenceConfig):
        assert f.metadata["doc"], f"{f.name} has no description"


def test_frozen() -> None:
    config = DefenceConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.label_skew_cos_min = 0.0  # type: ignore[misc]


def test_env_file_with_comments_quotes_and_export(tmp_path: Path) -> None:
    path = tmp_path / ".env.optimal"
    path.write_text(
        "# tuned on seeds 100-102\n"
        "\n"
        "export BEHAVIOR_RECOVERY_THRESHOLD=3\n"
        "export BEHAVIOR_RECOVERY_BONUS='0.15'  # a larger boost\n"
        'LABEL_SKEW_COS_MIN="-0.4"\n'
        "  LABEL_SKEW_COS_MAX = 0.97   # spaces around '=' are fine\n"
        "zerotrustml_committee_size=7\n",
        encoding="utf-8",
    )
    config = DefenceConfig.load(path, environ={})
    assert config.behavior_recovery_threshold == 3
    assert config.behavior_recovery_bonus == 0.15
    assert config.label_skew_cos_min == -0.4
    assert config.label_skew_cos_max == 0.97
    assert config.committee_size == 7
    assert config.reputation_initial == DefenceConfig().reputation_initial


def test_parse_env_file_rules() -> None:
    text = "A=1\nexport B='x # not a comment'\nC=2 # comment\nA=3\n"
    assert parse_env_file(text) == {"A": "3", "B": "x # not a comment", "C": "2"}
    with pytest.raises(ParameterError, match=r"f.env, line 2: expected KEY=VALUE"):
        parse_env_file("A=1\nnot a pair\n", "f.env")
    with pytest.raises(ParameterError, match="line 1: A: unterminated"):
        parse_env_file("A='1\n")


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "defence.json"
    path.write_text(json.dumps({"label_skew_cos_min": -0.6, "REPUTATION_PENALTY": 0.5, "committee_size": 3}))
    config = DefenceConfig.load(path, environ={})
    assert (config.label_skew_cos_min, config.reputation_penalty, config.committee_size) == (-0.6, 0.5, 3)


def test_json_round_trip(tmp_path: Path) -> None:
    config = DefenceConfig(label_skew_cos_min=-0.7, behavior_recovery_threshold=4)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_json()))
    assert DefenceConfig.load(path, environ={}) == config
    assert DefenceConfig.from_json(config.to_json()) == config


def test_to_env_round_trip(tmp_path: Path) -> None:
    config = DefenceConfig(sybil_cos_threshold=0.995, reputation_reward=0.07)
    path = tmp_path / ".env"
    path.write_text(config.to_env())
    assert DefenceConfig.load(path, environ={}) == config


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("LABEL_SKEW_COS_MIN=-0.4\nBEHAVIOR_RECOVERY_BONUS=0.2\n")
    config = DefenceConfig.load(path, environ={"LABEL_SKEW_COS_MIN": "-0.3", "PATH": "/usr/bin", "UNRELATED": "x"})
    assert config.label_skew_cos_min == -0.3  # environment wins
    assert config.behavior_recovery_bonus == 0.2  # file value kept where the environment is silent


def test_prefixed_environment_wins_over_bare() -> None:
    config = DefenceConfig.load(environ={"ZEROTRUSTML_LABEL_SKEW_COS_MAX": "0.9", "LABEL_SKEW_COS_MAX": "0.8"})
    assert config.label_skew_cos_max == 0.9
    assert DefenceConfig.load(environ={"ZEROTRUSTML_COMMITTEE_SIZE": "9"}).committee_size == 9


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROTRUSTML_REPUTATION_REWARD", "0.08")
    assert DefenceConfig.load().reputation_reward == 0.08


@pytest.mark.parametrize("suffix", [".env", ".json"])
def test_unknown_key_in_file_names_key_and_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"defence{suffix}"
    path.write_text('{"LABEL_SKEW_COS_MN": -0.4}' if suffix == ".json" else "LABEL_SKEW_COS_MN=-0.4\n")
    with pytest.raises(ParameterError) as info:
        DefenceConfig.load(path, environ={})
    assert "LABEL_SKEW_COS_MN" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("LABEL_SKEW_COS_MIN", "abc", "must be a number"),
        ("LABEL_SKEW_COS_MIN", "nan", "must be a number"),
        ("LABEL_SKEW_COS_MIN", "-1.5", "must be in"),
        ("SYBIL_COS_THRESHOLD", "1.01", "must be in"),
        ("REPUTATION_PENALTY", "-0.1", "must be in"),
        ("REPUTATION_INITIAL", "1.5", "must be in"),
        ("BEHAVIOR_RECOVERY_THRESHOLD", "2.5", "must be an integer"),
        ("BEHAVIOR_RECOVERY_THRESHOLD", "0", "must be in"),
        ("COMMITTEE_SIZE", "", "must be a number"),
        ("SIMILARITY_Z_THRESHOLD", "0", "must be in"),
        ("SUSPICION_THRESHOLD", "1e400", "must be finite"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, why: str) -> None:
    with pytest.raises(ParameterError, match=why) as info:
        DefenceConfig.load(environ={key: value})
    assert str(info.value).startswith(key)


def test_bad_value_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"REPUTATION_REWARD": "lots"}))
    with pytest.raises(ParameterError, match="REPUTATION_REWARD") as info:
        DefenceConfig.load(path, environ={})
    assert str(path) in str(info.value)
    path.write_text(json.dumps({"COMMITTEE_SIZE": True}))
    with pytest.raises(ParameterError, match="COMMITTEE_SIZE"):
        DefenceConfig.load(path, environ={})


def test_min_above_max() -> None:
    with pytest.raises(ParameterError, match="LABEL_SKEW_COS_MIN.*LABEL_SKEW_COS_MAX"):
        DefenceConfig.load(environ={"LABEL_SKEW_COS_MIN": "0.9", "LABEL_SKEW_COS_MAX": "0.5"})
    with pytest.raises(ParameterError, match="LABEL_SKEW_COS_MIN"):
        DefenceConfig(label_skew_cos_min=0.99)  # built in code: the same checks
    with pytest.raises(ParameterError, match="REPUTATION_INITIAL.*REPUTATION_EXCLUSION_THRESHOLD"):
        DefenceConfig(reputation_initial=0.2, reputation_exclusion_threshold=0.3)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="cannot read"):
        DefenceConfig.load(tmp_path / "missing.env", environ={})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParameterError, match="not valid JSON"):
        DefenceConfig.load(bad, environ={})
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ParameterError, match="object"):
        DefenceConfig.load(arr, environ={})
