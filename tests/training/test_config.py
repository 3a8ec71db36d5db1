"""Experiment configs: TOML files validate against the task schema; overrides are typed; unknown keys fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, build_config, load_config_data
from training.settings import REPO_ROOT
from training.tasks.sentiment.config import SentimentConfig

CONFIGS = sorted((REPO_ROOT / "training" / "configs").glob("sentiment_*.toml"))


def minimal() -> dict:
    return {"task": "sentiment", "name": "x", "export": {"name": "x"}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = build_config(SentimentConfig, load_config_data(path))
    assert config.export.name == config.name


def test_overrides_are_typed() -> None:
    config = build_config(
        SentimentConfig,
        minimal(),
        ["--seed=7", "--trainer.lr=3e-4", "--model.bidirectional=true", '--data.label_names=["n","p"]'],
    )
    assert config.seed == 7
    assert config.trainer.lr == pytest.approx(3e-4)
    assert config.model.bidirectional is True
    assert config.data.label_names == ["n", "p"]


def test_null_unsets_an_optional_key() -> None:
    data = minimal() | {"data": {"test": "sentiment/test.tsv", "max_vocab": 500}}
    config = build_config(SentimentConfig, data, ["--data.test=null", "--data.max_vocab=null"])
    assert config.data.test is None and config.data.max_vocab is None
    with pytest.raises(ConfigError):  # a required value cannot be unset
        build_config(SentimentConfig, minimal(), ["--trainer.lr=null"])


@pytest.mark.parametrize(
    "override",
    ["--trainer.learning_rate=1e-3", "--nonsense=1", "--model.cell.size=3", "--data.train.x=1"],
)
def test_unknown_override_key_is_an_error(override: str) -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        build_config(SentimentConfig, minimal(), [override])


@pytest.mark.parametrize("override", ["--trainer.lr=fast", "--model.cell=transformer", "--trainer.epochs=0"])
def test_ill_typed_override_is_an_error(override: str) -> None:
    with pytest.raises(ConfigError):
        build_config(SentimentConfig, minimal(), [override])


@pytest.mark.parametrize("override", ["trainer.lr=1", "--trainer.lr", "--=3"])
def test_malformed_override_is_an_error(override: str) -> None:
    with pytest.raises(ConfigError):
        build_config(SentimentConfig, minimal(), [override])


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'task = "sentiment"\nname = "x"\n[export]\nname = "x"\n[trainer]\nepochs = 2\nlr_decay = 0.5\n'
    )
    with pytest.raises(ConfigError, match="lr_decay"):
        build_config(SentimentConfig, load_config_data(path))
