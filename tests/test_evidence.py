"""Shipped results are what the code gives: a fixed, cheap sample of them (every method, both protocols) is re-run
from its spec on the mini profile and must match bit for bit, with a current code-and-weights fingerprint; a result
made on another CPU model may instead be one test image apart on an accuracy (float32 kernels round differently
between CPU models), and says so.

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
        record = json.loads(path.read_text())
        assert record["spec"] == spec.to_dict()
        assert record["provenance"]["profile"]["sha256"] == get_profile("mini").sha256  # world 2's weights


def test_shipped_sample_reproduces_bit_for_bit() -> None:
    """Stored results are read shipped-first; the re-runs go to a scratch store, never the user's cache."""
    checks = verify_results("mini", specs=SAMPLE, progress=False)
    for check in checks:  # exact on the CPU model that made them; one test image apart across models
        assert check.identical or check.one_image_across_cpus, (check.spec.filename, check.explanation())
        assert check.current, f"{check.spec.filename}: shipped with another code fingerprint; run make results"


#: world 1 (the book's world until world 2 replaced it) keeps its store, shipped in data/results/mini-world1; the
#: same cheap sample holds it to the same bar (building world 1 takes under a minute)
WORLD1 = get_profile("mini", world="1")


def test_world1_sample_is_shipped_and_reproduces_bit_for_bit() -> None:
    assert WORLD1.store_name == "mini-world1"
    for spec in SAMPLE[:-1]:
        path = SHIPPED_RESULTS / WORLD1.store_name / spec.filename
        assert path.is_file(), path
        assert json.loads(path.read_text())["provenance"]["profile"]["sha256"] == WORLD1.sha256  # world 1's weights
    checks = verify_results(WORLD1, specs=SAMPLE[:-1], progress=False)
    for check in checks:
        assert check.identical or check.one_image_across_cpus, (check.spec.filename, check.explanation())
        assert check.current, f"{check.spec.filename}: shipped with another code fingerprint"


def test_a_difference_says_which_cpus_and_how_many_test_images() -> None:
    """What ``perlkit results --verify`` printed for a world-2 result made on an AMD EPYC and re-run on an Intel Xeon:
    one novel test image of 396 (Caltech101) moved. The verdict says so (one-image), never "identical"; on the same
    CPU model, or with two images moved, it is DIFFERENT."""
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
    assert check.one_image_across_cpus and check.verdict == "one-image"
    assert not same.one_image_across_cpus and same.verdict == "DIFFERENT"
    two = dict(rerun, novel=74.74747474747475 + 2 * 100 / 396)
    assert not Verification(check.spec, stored, two, True, check.stored_device, check.rerun_device,
                            check.test_images).one_image_across_cpus
    only_hm = dict(stored, hm=76.6)  # an average moved with no accuracy under it: a real change
    assert not Verification(check.spec, stored, only_hm, True, check.stored_device, check.rerun_device,
                            check.test_images).one_image_across_cpus
    unknown = Verification(check.spec, stored, rerun, True, test_images=check.test_images)
    assert unknown.verdict == "DIFFERENT"


def test_a_transfer_result_counts_the_test_images_of_every_target() -> None:
    """Zero-shot SUN397 (2,160 test images) moved by one image between the AMD EPYC that made world 2's seed-1
    transfer and the Intel Xeon that made seeds 2 and 3 (zero-shot has nothing seeded to train): the cross-dataset
    average moves with it, nothing else does."""
    from perlkit.experiments.sweeps import Verification

    store = SHIPPED_RESULTS / "mini"
    amd, intel = (json.loads(next(store.glob(f"imagenet_transfer-zeroshot-imagenet-s{seed}-*.json")).read_text())
                  for seed in (1, 2))
    images = {name.removesuffix("_test"): n for name, n in amd["counts"].items() if name.endswith("_test")}
    check = Verification(RunSpec("imagenet_transfer", "zeroshot", "imagenet"), amd["metrics"], intel["metrics"],
                         True, "CPU: AMD EPYC (1 thread)", "CPU: Intel(R) Xeon(R) Processor (1 thread)", images)
    assert check.images_apart == {"sun397": 1} and check.verdict == "one-image"


def test_verify_command_accepts_one_image_across_cpus_unless_exact(monkeypatch, capsys) -> None:
    from perlkit.cli import main
    from perlkit.experiments import sweeps

    stored = {"base": 50.0, "novel": 50.0, "hm": 50.0}
    moved = {"base": 50.0, "novel": 50.25, "hm": 50.12468827930175}
    check = sweeps.Verification(RunSpec("b2n", "zeroshot", "eurosat"), stored, moved, True, "CPU: AMD EPYC",
                                "CPU: Intel Xeon", {"base": 400, "novel": 400})
    monkeypatch.setattr(sweeps, "verify_results", lambda *args, **kwargs: [check])
    assert main(["results", "--profile", "mini", "--verify", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("one-image") and "novel by 1 test image" in out
    assert "0 of 1 identical, 1 within one test image made on another CPU model" in err
    assert main(["results", "--profile", "mini", "--verify", "1", "--exact"]) == 1
    out, err = capsys.readouterr()
    assert "1 DIFFERENT" in err
    assert out.startswith("DIFFERENT") and "novel by 1 test image" in out  # the line agrees with the count
