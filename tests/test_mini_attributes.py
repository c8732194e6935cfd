"""`perlkit mini attributes`: per-attribute agreement of a frozen mini CLIP on images rendered by a world's code."""

from __future__ import annotations

import pytest

from perlkit.cli import main
from perlkit.mini import world
from perlkit.mini.attributes import diagnose, format_report


@pytest.fixture(scope="module")
def pets():
    return diagnose(None, "oxford_pets", "1", train_per_class=2, test_per_class=1)  # shipped world-1 weights


def test_every_attribute_is_scored_and_never_below_the_accuracy(pets) -> None:
    concepts = world.bench_concepts_cached(world.BENCHMARKS.index(world.BENCH_BY_KEY["oxford_pets"]))
    assert list(pets.agreement.index) == list(concepts[0].attrs)
    assert pets.classes == (len(concepts) + 1) // 2 and pets.test_images == pets.classes
    # a right prediction shares every attribute, so no attribute agrees less often than the whole class does
    assert (pets.agreement["zero-shot"] >= pets.zeroshot - 1e-9).all()
    assert (pets.agreement["class mean"] >= pets.class_mean - 1e-9).all()
    assert ((pets.agreement >= 0) & (pets.agreement <= 100)).all().all()
    for key, table in pets.confusion.items():
        assert table.to_numpy().sum() == pets.test_images, key


def test_the_default_is_the_shipped_mini_clip_not_random_weights() -> None:
    """World 1's EuroSAT with the shipped weights: zero-shot base 96.5 in the committed calibration (chapter 01)."""
    eurosat = diagnose(None, "eurosat", "1", train_per_class=2, test_per_class=8)
    assert eurosat.zeroshot >= 80.0  # random weights give about chance (20%)


def test_bad_names_are_refused_by_name(pets) -> None:
    with pytest.raises(ValueError, match="no benchmark 'petz'"):
        diagnose(None, "petz", "1")
    with pytest.raises(ValueError, match="no attribute 'colour'; it has"):
        format_report(pets, ["colour"])


def test_cli_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mini", "attributes", "oxford_pets", "--train-per-class", "2", "--test-per-class", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("oxford_pets: zero-shot ") and "mini-world diagnostic" in out
