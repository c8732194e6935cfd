"""The `perlkit` command: argument parsing and printing only; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from perlkit import __version__
from perlkit.bench import add_bench_command
from perlkit.data.cli import add_data_commands
from perlkit.files import output_root
from perlkit.fit import add_fit_commands
from perlkit.methods.registry import parse_option
from perlkit.mini.cli import add_mini_commands
from perlkit.smoke import add_smoke_command


def cmd_params(args: argparse.Namespace) -> int:
    """Trainable and total parameter counts of a method on a model, from random weights (no download)."""
    import torch

    from perlkit.backbone import create_backbone
    from perlkit.methods import build_method

    torch.manual_seed(0)
    backbone = create_backbone(args.model, None)
    method = build_method(args.method, backbone, **dict(args.option or []))
    trainable = method.num_trainable()
    total = trainable + sum(p.numel() for p in backbone.parameters())
    if args.json:
        print(json.dumps({"method": args.method, "model": args.model, "trainable": trainable, "total": total}))
    else:
        print(f"{args.method} on {args.model}: {trainable:,} trainable of {total:,} parameters")
    return 0


def cmd_zeroshot(args: argparse.Namespace) -> int:
    """Zero-shot accuracy of a profile's CLIP on all 15 benchmarks (builds the mini world on first use)."""
    from perlkit.data import DATASET_NAMES
    from perlkit.experiments import Session
    from perlkit.profiles import get_profile

    profile = get_profile(args.profile, data_root=args.data_root, pretrained=args.pretrained, model=args.model,
                          world=args.world)
    session = Session(profile, progress=not args.json, skip_corrupt=args.skip_corrupt)
    rows = session.zeroshot_benchmarks(args.datasets or DATASET_NAMES, template=args.template)
    if args.json:
        print(json.dumps({"profile": profile.name, "model": profile.model, "template": args.template,
                          "benchmarks": rows}, indent=2))
        return 0
    print(f"zero-shot {profile.model} ({profile.label})")
    print(f"{'benchmark':<18}{'classes':>8}{'chance %':>10}{'top-1 %':>10}")
    for row in rows:
        print(f"{row['name']:<18}{row['num_classes']:>8}{row['chance']:>10.1f}{row['accuracy']:>10.2f}")
    print(f"{'mean':<18}{'':>8}{'':>10}{sum(r['accuracy'] for r in rows) / len(rows):>10.2f}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """Run (or resume) the full sweep behind the book, here or as a job array (--executor local/slurm), plan it
    (--dry-run), show its status, or verify stored results by re-running them."""
    from perlkit.experiments import executors, sweeps
    from perlkit.experiments.store import SHIPPED_RESULTS, ResultStore
    from perlkit.profiles import get_profile

    out = output_root(args.out, args.ship, SHIPPED_RESULTS)
    profile = get_profile(args.profile, data_root=args.data_root, pretrained=args.pretrained, model=args.model,
                          world=args.world)
    if args.status:
        status = sweeps.sweep_status(profile, tuple(args.seeds), args.parts, out)
        print(f"{'part':<16}" + "".join(f"{state:>9}" for state in sweeps.RUN_STATES))
        for part, counts in status.counts.items():
            print(f"{part:<16}" + "".join(f"{counts[state]:>9,}" for state in sweeps.RUN_STATES))
        for record in status.failures:
            spec = record.get("spec", {})
            print(f"failed: {spec.get('kind')} {spec.get('method')} {spec.get('dataset')} s{spec.get('seed')}: "
                  f"{record.get('error')} (log {record.get('log') or 'none: not run under submitit'}; "
                  f"record {record.get('_path')})")
        return 0
    if args.verify is not None:
        checks = sweeps.verify_results(profile, args.verify, args.seed, out=out)
        for check in checks:  # under --exact, only identical passes: a one-image line says DIFFERENT like its count
            verdict = "DIFFERENT" if args.exact and not check.identical else check.verdict
            print(f"{verdict:<10} {check.spec.filename}: stored {check.stored} recomputed {check.recomputed}"
                  f"{'' if check.current else ' (stored fingerprint stale)'}"
                  f"{f' ({check.explanation()})' if not check.identical else ''}")
        identical = sum(c.identical for c in checks)
        tolerated = 0 if args.exact else sum(c.one_image_across_cpus for c in checks)
        failed = len(checks) - identical - tolerated
        print(f"perlkit results --verify: {identical} of {len(checks)} identical"
              f"{f', {tolerated} within one test image made on another CPU model' if tolerated else ''}"
              f"{f', {failed} DIFFERENT' if failed else ''}", file=sys.stderr)
        return 1 if failed else 0
    if args.executor == "serial" and not args.dry_run:
        where = sweeps.run_full_sweep(profile=profile, seeds=tuple(args.seeds), out=out, parts=args.parts,
                                      only_stored=args.only_stored)
        print(f"perlkit results: results in {where}", file=sys.stderr)
        return 0
    if args.only_stored:
        store = ResultStore(profile.store_name, root=out)
        parts = {"stored": sweeps.stored_specs(store)}
    else:
        parts = sweeps.grid_parts(args.profile, tuple(args.seeds), args.parts)
    options = executors.ExecutorOptions(
        max_parallel=args.max_parallel, chunk=args.chunk, partition=args.partition, gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task, time_min=args.time, mem_gb=args.mem,
    )
    run = executors.run_grid(parts, profile, out, args.executor, options, dry_run=args.dry_run)
    if args.dry_run:
        print("\n".join(executors.describe_plan(run.plan)))
        print("perlkit results --dry-run: nothing submitted", file=sys.stderr)
        return 0
    where = run.plan.store.write_dir
    if not run.submitted:
        print(f"perlkit results: nothing to submit, every run is stored in {where}", file=sys.stderr)
        return 0
    print(f"perlkit results: {run.submitted} run(s) in {len(run.plan.chunks)} task(s) on {args.executor} "
          f"(jobs {', '.join(run.job_ids[:3])}{' ...' if len(run.job_ids) > 3 else ''}); logs in {run.plan.logs}",
          file=sys.stderr)
    if run.states is None:
        print(f"perlkit results: submitted; results land in {where}: follow with perlkit results --status, and run "
              "this command again to submit whatever is still missing", file=sys.stderr)
        return 0
    for line in run.task_errors:
        print(f"perlkit results: {line}", file=sys.stderr)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(run.states.items()))
    print(f"perlkit results: {counts}; results in {where}", file=sys.stderr)
    return 0 if run.states.get("done", 0) == run.submitted else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from perlkit.mini.worlds import DEFAULT_WORLD, WORLDS

    world_help = f"mini world version (default {DEFAULT_WORLD}); another world's results have their own store"
    parser = argparse.ArgumentParser(prog="perlkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"perlkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="count trainable and total parameters of a method")
    p.add_argument("--method", required=True)
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--option", action="append", type=parse_option, metavar="KEY=VALUE",
                   help="method option, e.g. --option steps=2 (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_params)

    z = sub.add_parser("zeroshot", help="zero-shot accuracy on the 15 benchmarks of a profile")
    z.add_argument("--profile", default="mini", choices=["mini", "paper"])
    z.add_argument("--data-root", default=None)
    z.add_argument("--model", default=None)
    z.add_argument("--pretrained", default=None, help="open_clip tag, local weights file, or 'random'")
    z.add_argument("--world", default=None, choices=WORLDS, help=world_help)
    z.add_argument("--template", default="coop", choices=["coop", "single"])
    z.add_argument("--datasets", nargs="+", default=None, metavar="NAME", help="subset of the 15 benchmarks")
    z.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images with a warning")
    z.add_argument("--json", action="store_true")
    z.set_defaults(func=cmd_zeroshot)

    r = sub.add_parser("results", help="run or resume the full sweep behind the book (make results)")
    r.add_argument("--profile", default="mini", choices=["mini", "paper"])
    r.add_argument("--world", default=None, choices=WORLDS, help=world_help)
    r.add_argument("--seeds", type=int, nargs="+", default=[1])
    r.add_argument("--data-root", default=None, help="the profile's data root (paper: default $PERLKIT_DATA)")
    r.add_argument("--model", default=None, help="open_clip model (e.g. ViT-B-16-quickgelu for OpenAI's own file)")
    r.add_argument("--pretrained", default=None, help="open_clip tag, local weights file, or 'random'")
    r.add_argument("--out", default=None, help="results folder (default: the user cache, which the chapters read)")
    r.add_argument("--ship", action="store_true", help="write into the repository's data/results (maintainers)")
    r.add_argument("--parts", nargs="+", default=None,
                   help="subset of the sweep (b2n transfer ablations rivals_default rmma_ablations)")
    r.add_argument("--only-stored", action="store_true", help="refresh stale results already stored, add none")
    r.add_argument("--status", action="store_true",
                   help="count done / stale / missing / failed runs per part (naming each failure's log) and exit")
    r.add_argument("--verify", type=int, default=None, metavar="N",
                   help="re-run N stored results drawn at random and require identical metrics (a result made "
                        "on another CPU model may differ by one test image per accuracy; --exact refuses that)")
    r.add_argument("--exact", action="store_true",
                   help="--verify: require identical metrics even for results made on another CPU model")
    r.add_argument("--seed", type=int, default=0, help="random draw of --verify")
    r.add_argument("--executor", default="serial", choices=["serial", "local", "slurm"],
                   help="serial: this process (default); local: a job array of local processes; slurm: a SLURM job "
                   "array (submitit); all write the same store, and running the command again submits what is missing")
    r.add_argument("--dry-run", action="store_true",
                   help="print the plan (runs per part, job array, submitit parameters, estimated hours); submit "
                   "nothing")
    r.add_argument("--max-parallel", type=int, default=None, metavar="N", help="tasks running at once")
    r.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="runs per task (default: slurm 4, or more to keep the array within 1,000 tasks; local: one "
                   "task per process)")
    r.add_argument("--partition", default=None, help="SLURM partition")
    r.add_argument("--gpus-per-task", type=int, default=None, metavar="N",
                   help="GPUs per task (default: 1 for the paper profile on SLURM, 1 locally when the profile "
                   "runs on CUDA, else 0)")
    r.add_argument("--cpus-per-task", type=int, default=None, metavar="N",
                   help="SLURM CPUs per task (default: the profile's loader workers + 1)")
    r.add_argument("--time", type=int, default=720, metavar="MINUTES", help="wall-clock limit of one task")
    r.add_argument("--mem", type=float, default=None, metavar="GB", help="SLURM memory per task")
    r.set_defaults(func=cmd_results)

    add_data_commands(sub)
    add_mini_commands(sub)
    add_bench_command(sub)
    add_smoke_command(sub)
    add_fit_commands(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The failures a user can fix (bad data, weights, checkpoint, option, parameter, store): one line each."""
    from perlkit.backbone import BackboneError
    from perlkit.data import DatasetError
    from perlkit.engine import CheckpointError

    return (DatasetError, BackboneError, CheckpointError, ValueError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `perlkit` console script: a user's mistake is one line on stderr and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except user_errors() as err:
        if args.debug:
            raise
        text = str(err).strip()
        if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the original message
            text = text.splitlines()[-1].split(": ", 1)[-1]
        message = " ".join(text.split()) or type(err).__name__
        print(f"perlkit {args.command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perlkit {args.command}: interrupted; finished runs are saved, run the command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
