"""`perlkit mini` subcommands: build, pretrain, and the world diagnostics (wired into perlkit.cli by its owner)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from perlkit.mini.build import build_mini_world
    root = build_mini_world(Path(args.root) if args.root else None, seed=args.seed, progress=True, scale=args.scale,
                            world=args.world)
    print(f"mini world ready at {root}")
    return 0


def pretrain_out_dir(out: str | None, ship: bool, world: str | None = None) -> Path:
    """Where `mini pretrain` writes: --out, else the world's shipped folder (perlkit/assets/mini for world 1) with
    --ship (a checkout only), else the user cache."""
    from perlkit.files import cache_root, require_checkout
    from perlkit.mini.weights import mini_weights_path
    from perlkit.mini.worlds import DEFAULT_WORLD, get_world
    design = get_world(DEFAULT_WORLD if world is None else world)
    if design.candidate_of is not None and out is None:
        raise ValueError(f"world {design.version} is a candidate pretraining design that ships no weights: give --out "
                         f"DIR (e.g. data/candidates/world{design.version}-run1)")
    world = design.version
    shipped = "perlkit/" + "/".join(design.weights_dir)
    if out is not None and ship:
        raise ValueError(f"give either --out DIR or --ship (which writes the shipped {shipped}), not both")
    if ship:
        require_checkout(shipped)
        return mini_weights_path(world).parent
    return Path(out) if out else cache_root() / "mini-clip"


def _pretrain(args: argparse.Namespace) -> int:
    from perlkit.mini.pretrain import pretrain_mini_clip
    out = pretrain_out_dir(args.out, args.ship, args.world)
    log = pretrain_mini_clip(out, seed=args.seed, steps=args.steps, progress=True, eval_every=args.eval_every,
                             world=args.world)
    print(json.dumps({"weights_sha256": log["weights_sha256"], "wall_time_s": log["wall_time_s"],
                      "zeroshot_test_top1": log["zeroshot_test_top1"], "zeroshot_mean": log["zeroshot_mean"],
                      "weights": str(out / "mini-clip.pt")}, indent=1))
    return 0


def world_overrides(world: str, weights: str | None, data_root: str | None = None) -> dict:
    """Profile overrides of a mini command run on ``world``: the world's folder (built when absent) and its shipped
    weights, or ``weights`` in their place on any world (a candidate that `perlkit mini pretrain --out` wrote)."""
    overrides: dict = {"world": world, "data_root": data_root}
    if weights:
        overrides["pretrained"] = weights
    return overrides


def _calibrate(args: argparse.Namespace) -> int:
    from perlkit.data import B2N_DATASETS
    from perlkit.experiments.calibration import bars_table, calibrate, calibration_table
    from perlkit.experiments.protocols import Session
    from perlkit.mini.worlds import DEFAULT_WORLD
    from perlkit.profiles import get_profile

    if args.world != DEFAULT_WORLD and args.profile != "mini":
        raise ValueError(f"--world {args.world} calibrates a candidate mini world: use --profile mini")
    overrides = world_overrides(args.world, args.weights, args.data_root)
    session = Session(get_profile(args.profile, **overrides), progress=True)
    report = calibrate(session, datasets=args.datasets or B2N_DATASETS, seed=args.seed, template=args.template,
                       progress=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(report["label"])
    print(calibration_table(report).round(2).to_string())
    print()
    print(bars_table(report).to_string())
    return 0


def _views(args: argparse.Namespace) -> int:
    from perlkit.data import B2N_DATASETS
    from perlkit.experiments.calibration import view_robustness, view_robustness_table
    from perlkit.experiments.protocols import Session
    from perlkit.profiles import get_profile

    session = Session(get_profile("mini", **world_overrides(args.world, args.weights)), progress=False)
    rows = [view_robustness(session, name, seed=args.seed, draws=args.draws) for name in args.datasets or B2N_DATASETS]
    if args.json:
        print(json.dumps({"weights_sha256": session.backbone.weights_sha256(), "seed": args.seed,
                          "draws": args.draws, "benchmarks": rows}, indent=1))
        return 0
    print(view_robustness_table(rows).round(1).to_string())
    return 0


def _adaptation(args: argparse.Namespace) -> int:
    from perlkit.data import B2N_DATASETS
    from perlkit.experiments.calibration import ADAPTATION_BAR, adaptation, adaptation_table
    from perlkit.experiments.sweeps import open_store_session
    from perlkit.profiles import get_profile

    session = open_store_session(get_profile("mini", **world_overrides(args.world, args.weights)))
    report = adaptation(session, methods=args.methods, datasets=args.datasets or B2N_DATASETS, seed=args.seed)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(report["label"])
    print(adaptation_table(report).round(2).to_string())
    verdicts = ", ".join(f"{m} {'pass' if r['pass'] else 'FAIL'}" for m, r in report["methods"].items())
    print(f"\nbar: mean base gain >= +{ADAPTATION_BAR:g} under each method's own recipe: {verdicts}")
    return 0


def _attributes(args: argparse.Namespace) -> int:
    from perlkit.mini.attributes import diagnose, format_report

    for dataset in args.datasets:
        report = diagnose(args.weights, dataset, args.world, args.train_per_class, args.test_per_class)
        print(format_report(report, args.confusion))
    return 0


def add_mini_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `mini build`, `pretrain` and `calibrate` under the perlkit CLI; each handler returns an exit code."""
    from perlkit.experiments.calibration import SEED, VIEW_DRAWS
    from perlkit.mini.worlds import CANDIDATE_WORLDS, DEFAULT_WORLD, WORLDS
    mini = subparsers.add_parser("mini", help="synthetic mini world and mini CLIP")
    world_help = f"world version (default {DEFAULT_WORLD}, the book's: issue 13's world, run 5; 1 is the first world)"
    sub = mini.add_subparsers(dest="mini_command", required=True)
    b = sub.add_parser("build", help="render the 15 mini benchmarks in CoOp layouts")
    b.add_argument("--root", default=None, help="target folder (default: $PERLKIT_CACHE/mini-<version>)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--scale", type=float, default=1.0, help="fraction of the images per class (tests)")
    b.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS, help=world_help)
    b.set_defaults(func=_build, handler=_build)
    p = sub.add_parser("pretrain", help="pretrain the mini CLIP contrastively on world captions")
    p.add_argument("--out", default=None, help="output folder (default: $PERLKIT_CACHE/mini-clip)")
    p.add_argument("--ship", action="store_true",
                   help="write into the checkout's perlkit/assets/mini (the shipped weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="stop early on the world's schedule (default: all)")
    p.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS + CANDIDATE_WORLDS,
                   help=world_help + f"; {', '.join(CANDIDATE_WORLDS)}: candidate pretraining designs, with --out")
    p.add_argument("--eval-every", type=int, default=0, help="quick zero-shot every N steps (0 = only at the end)")
    p.set_defaults(func=_pretrain, handler=_pretrain)
    c = sub.add_parser("calibrate", help="zero-shot vs 16-shot linear probe per benchmark, beside the real ViT-B/16")
    c.add_argument("--json", action="store_true", help="print the report as JSON (progress stays on stderr)")
    c.add_argument("--profile", default="mini", choices=["mini", "paper"])
    c.add_argument("--data-root", default=None, help="data root (default: the profile's)")
    c.add_argument("--template", default="coop", choices=["coop", "single"])
    c.add_argument("--seed", type=int, default=SEED,
                   help=f"few-shot sampling seed of the probe's shots (default {SEED}; another seed shows how much "
                        "the bars' margins move with the shots drawn)")
    c.add_argument("--datasets", nargs="*", default=None, help="base-to-novel datasets (default: all 11)")
    c.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS, help=world_help)
    c.add_argument("--weights", default=None, help="a mini-clip.pt to calibrate instead of the world's shipped weights")
    c.set_defaults(func=_calibrate, handler=_calibrate)
    v = sub.add_parser("views", help="zero-shot and the linear probe under the recipes' training crops",
                       description="A world-design diagnostic of the frozen model: how much zero-shot accuracy the "
                                   "few-shot recipes' RandomResizedCrop and flip cost on the training shots, and "
                                   "what the linear probe reaches on base test images when fitted on those views "
                                   "(the headroom left to a method that trains on them).")
    v.add_argument("--datasets", nargs="*", default=None, help="base-to-novel datasets (default: all 11)")
    v.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS, help=world_help)
    v.add_argument("--weights", default=None, help="a mini-clip.pt (default: the world's shipped weights)")
    v.add_argument("--seed", type=int, default=SEED, help=f"few-shot sampling seed (default {SEED})")
    v.add_argument("--draws", type=int, default=VIEW_DRAWS,
                   help=f"random draws of each training crop (default {VIEW_DRAWS})")
    v.add_argument("--json", action="store_true", help="print the rows as JSON")
    v.set_defaults(func=_views, handler=_views)
    d = sub.add_parser("adaptation", help="each rival's default recipe against zero-shot on base accuracy",
                       description="Issue 13's adaptation bar: train every rival with its own default recipe on each "
                                   "base-to-novel benchmark (ordinary runs in the weights' result store, so a killed "
                                   "check resumes) and compare base accuracy with zero-shot CLIP.")
    d.add_argument("--methods", nargs="*", default=None, help="methods (default: every rival; PERL keeps one epoch)")
    d.add_argument("--datasets", nargs="*", default=None, help="base-to-novel datasets (default: all 11)")
    d.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS, help=world_help)
    d.add_argument("--weights", default=None, help="a mini-clip.pt (default: the world's shipped weights)")
    d.add_argument("--seed", type=int, default=SEED, help=f"run seed (default {SEED})")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=_adaptation, handler=_adaptation)
    a = sub.add_parser("attributes", help="which attribute of a benchmark's classes a frozen mini CLIP misses",
                       description="Render base-class images with the world's current code, encode them with the "
                                   "weights, and print how often zero-shot and the nearest class mean share each "
                                   "attribute with the true class (a world-design diagnostic, not a result).")
    a.add_argument("datasets", nargs="+", help="base-to-novel benchmarks, e.g. sun397 food101")
    a.add_argument("--world", default=DEFAULT_WORLD, choices=WORLDS, help=world_help)
    a.add_argument("--weights", default=None, help="a mini-clip.pt (default: the world's shipped weights)")
    a.add_argument("--train-per-class", type=int, default=16, help="images a class for the class means")
    a.add_argument("--test-per-class", type=int, default=8, help="test images a class")
    a.add_argument("--confusion", nargs="*", default=[], metavar="ATTRIBUTE",
                   help="also print these attributes' confusion matrices")
    a.set_defaults(func=_attributes, handler=_attributes)
