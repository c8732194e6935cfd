"""Shipped results are what the code gives: a fixed, cheap sample of them (every method, both protocols) is re-run
from its spec on the mini profile and must match bit for bit, with a current code-and-weights fingerprint.

``perlkit results --verify N`` does the same for N results drawn at random.
"""

from __future__ import annotations

import json

from perlkit.experiments import RunSpec
from perlkit.experiments.store import SHIPPED_RESULTS
from perlkit.experiments.sweeps import verify_results
from perlkit.methods import list_methods
from perlkit.profiles import get_profile

#: EuroSAT base-to-novel is the cheapest run of every method (about 5 s each); zero-shot ImageNet transfer covers
#: the second protocol (ImageNet, 10 cross-dataset targets and 4 shifted variants; about 40 s)
SAMPLE = [RunSpec("b2n", method, "eurosat") for method in list_methods()] + [
    RunSpec("imagenet_transfer", "zeroshot", "imagenet")
]


def test_sample_is_shipped() -> None:
    for spec in SAMPLE:
        path = SHIPPED_RESULTS / "mini" / spec.filename
        assert path.is_file(), path
        assert json.loads(path.read_text())["spec"] == spec.to_dict()


def test_shipped_sample_reproduces_bit_for_bit() -> None:
    """Stored results are read shipped-first; the re-runs go to a scratch store, never the user's cache."""
    checks = verify_results("mini", specs=SAMPLE, progress=False)
    for check in checks:
        assert check.identical, (check.spec.filename, check.stored, check.recomputed)
        assert check.current, f"{check.spec.filename}: shipped with another code fingerprint; run make results"


#: world 2 (issue 13's world) has its own store, shipped in data/results/mini-world2 as its sweep fills it; the same
#: cheap sample holds it to the same bar (building world 2 takes under a minute)
WORLD2 = get_profile("mini", world="2")


def test_world2_sample_is_shipped_and_reproduces_bit_for_bit() -> None:
    for spec in SAMPLE[:-1]:
        path = SHIPPED_RESULTS / WORLD2.store_name / spec.filename
        assert path.is_file(), path
        assert json.loads(path.read_text())["provenance"]["profile"]["world"] == "2"
    checks = verify_results(WORLD2, specs=SAMPLE[:-1], progress=False)
    for check in checks:
        assert check.identical, (check.spec.filename, check.stored, check.recomputed)
        assert check.current, f"{check.spec.filename}: shipped with another code fingerprint"


def test_a_difference_says_which_cpus_and_how_many_test_images() -> None:
    """What ``perlkit results --verify`` printed for a world-2 result made on an AMD EPYC and re-run on an Intel Xeon:
    one novel test image of 396 (Caltech101) moved; the verdict stays DIFFERENT, the clause says why it may be."""
    from perlkit.experiments.sweeps import Verification

    stored = {"base": 78.43137254901961, "hm": 76.54512542022239, "novel": 74.74747474747475}
    rerun = {"base": 78.43137254901961, "novel": 75.0, "hm": 76.67731629392972}
    check = Verification(RunSpec("b2n", "rmma", "caltech101"), stored, rerun, True, "CPU: AMD EPYC (1 thread)",
                         "CPU: Intel(R) Xeon(R) Processor (1 thread)", {"base": 408, "novel": 396})
    assert not check.identical and check.images_apart == {"novel": 1}
    assert check.explanation() == ("made on CPU: AMD EPYC (1 thread), re-run on CPU: Intel(R) Xeon(R) Processor "
                                   "(1 thread): float32 kernels differ between CPU models; novel by 1 test image")
    same = Verification(check.spec, stored, rerun, True, "CPU: AMD EPYC (1 thread)", "CPU: AMD EPYC (1 thread)",
                        {"base": 408, "novel": 396})
    assert same.explanation().startswith("same device")
    assert Verification(check.spec, stored, dict(stored), True).explanation() == ""
