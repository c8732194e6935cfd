"""The `perlkit` command line: parameter counts (issue acceptance numbers) and clear errors."""

from __future__ import annotations

import json

import pytest

from perlkit.cli import main

EXPECTED = {"perl": 6402, "zeroshot": 0, "mmrl": 4_992_256, "mmrlpp": 813_312, "mma": 674_560}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_params_json_on_vitb16(method: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", method, "--model", "ViT-B-16", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"method", "model", "trainable", "total"}
    assert payload["trainable"] == EXPECTED[method]
    assert payload["total"] > payload["trainable"]


def test_params_rmma_in_stated_range(capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", "rmma", "--json"]) == 0
    assert 400_000 <= json.loads(capsys.readouterr().out)["trainable"] <= 560_000


def test_params_with_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", "perl", "--model", "tiny-clip", "--option", "modalities=vision", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trainable"] == 5 * 32 + 1


def test_unknown_method_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", "prel", "--model", "tiny-clip"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'prel'" in err and "perl" in err


def test_unknown_option_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "--method", "perl", "--model", "tiny-clip", "--option", "stepz=2"]) == 2
    assert "stepz" in capsys.readouterr().err
