"""Small things a new user reads (issue 40): help texts without formatting leftovers, help for every argument of
``index search``, a config key typo answered with the key meant."""

from __future__ import annotations

import pytest

from sparseclip.cli import main
from sparseclip.config import ConfigError, load_config


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_train_help_prints_single_percent_signs(capsys):
    out = _help(capsys, "train")
    assert "1/3/10/30/100% of training" in out and "%%" not in out


def test_index_search_help_explains_every_argument(capsys):
    out = " ".join(_help(capsys, "index", "search").split())
    assert "INDEX_DIR an index folder written by `sparseclip index build`" in out
    assert "--require-feature ID keep only items on which feature ID is active" in out
    assert "--exclude-feature ID drop items on which feature ID is active" in out


def test_unknown_config_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"train\.stpes: unknown key \(did you mean train\.steps\?"):
        load_config("micro", ["train.stpes=10"])
    with pytest.raises(ConfigError) as e:  # nothing close: no suggestion, the known keys as before
        load_config("micro", ["train.zzzzzz=10"])
    assert "did you mean" not in str(e.value) and "known: accum_steps" in str(e.value)
