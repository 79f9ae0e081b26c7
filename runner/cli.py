"""The command line: validate, schema, plan, run, status, show.

Exit codes: 0 all ok; 1 finished with failed points (result written); 2 refused
before running (a bad spec or input, a busy or foreign folder, impossible
resources) with one located message; 3 stopped by the machine (disk full, out of
memory, cluster lost), finished points kept. None of these prints a traceback;
only a bug in runner itself does (exit 70).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from runner.errors import RunnerError

EXIT_FAILED_POINTS = 1
EXIT_BUG = 70  # sysexits' EX_SOFTWARE


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished tasks are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `runner schema | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        import traceback

        traceback.print_exc()
        print("internal error: this is a bug in runner, please report it with the traceback above", file=sys.stderr)
        return EXIT_BUG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner", description="Declarative interpretability experiments.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("validate", help="check specs (schema, sweep, model-dependent checks); writes nothing")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", help="print the JSON Schema of the spec language")
    p.set_defaults(func=cmd_schema)

    p = verbs.add_parser("plan", help="show dims, points, tasks, resources and output folder; writes nothing")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--out", metavar="DIR", help="run folder instead of results/<name>/")
    p.set_defaults(func=cmd_plan)

    p = verbs.add_parser("run", help="run a spec; a rerun resumes from finished shards")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--executor", choices=["local", "ray"], help="override execution.executor")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (ray executor; default: execution.address, then $RAY_ADDRESS, "
                        "else a local Ray started for the run)")
    p.add_argument("--out", metavar="DIR", help="run folder instead of results/<name>/")
    p.add_argument("--fresh", action="store_true", help="discard earlier results in the run folder")
    p.set_defaults(func=cmd_run)

    p = verbs.add_parser("show", help="a run's result: dims, variables, provenance, failed points")
    p.add_argument("run", metavar="NAME|SPEC|DIR|FILE")
    p.set_defaults(func=cmd_show)

    p = verbs.add_parser("status", help="finished / pending / failed points of a run")
    p.add_argument("run", metavar="NAME|DIR")
    p.set_defaults(func=cmd_status)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    errors = []
    for spec in args.specs:
        try:
            plan = compile_plan(spec, require_runs=False)
        except RunnerError as exc:
            errors.append(exc)
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"{spec}: ok ({len(plan)} point{'' if len(plan) == 1 else 's'})")
        for note in plan.notes:
            print(f"  note: {note}")
    return 2 if errors else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from runner.spec import spec_kinds

    kinds = spec_kinds()
    schema = TypeAdapter(kinds["intervene"] | kinds["train"]).json_schema()
    schema.update({"title": "runner spec", "description": "A runner experiment spec: kind intervene (default) or train."})
    print(json.dumps(schema, indent=2))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    print(compile_plan(args.spec, out=args.out).describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    plan = compile_plan(args.spec, out=args.out)
    from runner.execute.driver import execute

    outcome = execute(plan, executor=args.executor, address=args.address, fresh=args.fresh)
    total = len(plan)
    print(f"wrote {outcome.folder.result_file}  ({total - len(outcome.failed)} of {total} points ok)")
    for line in undefined_counts(outcome.dataset):
        print(f"  {line}")
    if "success" in outcome.dataset and "random_success" in outcome.dataset:
        _print_training_summary(outcome.dataset, plan)
    if outcome.failed:
        print(f"{len(outcome.failed)} of {total} points failed:", file=sys.stderr)
        for coords, message in outcome.failed[:20]:
            where = ", ".join(f"{k}={v!r}" for k, v in coords.items()) or "(the only point)"
            print(f"  {where}: {message}", file=sys.stderr)
        if len(outcome.failed) > 20:
            print(f"  ... and {len(outcome.failed) - 20} more (see the error variable)", file=sys.stderr)
        return EXIT_FAILED_POINTS
    return 0


def undefined_counts(ds) -> list[str]:
    """For each variable that can be undefined by definition, how many of its values (of ok points) are."""
    import numpy as np

    ok = ds["status"] == "ok"
    lines = []
    for name, var in ds.data_vars.items():
        if "undefined" in var.attrs:
            counted = ok.broadcast_like(var)
            n = int((np.isnan(var) & counted).sum())
            lines.append(f"{name}: {n} of {int(counted.sum())} values undefined ({var.attrs['undefined']})")
    return lines


def _print_training_summary(ds, plan) -> None:
    """Success of each trained agent on the evaluation seeds, beside a random policy's."""
    success = ds["success"].mean("episode")
    random = ds["random_success"].mean("episode")
    for index in range(len(plan)):
        coords = plan.coords_of(index)
        where = {k: v for k, v in coords.items() if k in success.dims}
        label = ", ".join(f"{k}={v}" for k, v in coords.items()) or plan.spec.name
        print(f"  {label}: success {float(success.sel(where)):.1%} over {ds.sizes['episode']} unseen episodes "
              f"(random policy {float(random.sel(where)):.1%})")


def cmd_show(args: argparse.Namespace) -> int:
    import numpy as np

    from runner.results.load import load, result_path

    ds = load(args.run)
    print(f"{result_path(args.run)}\n")
    print(ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds)
    keys = ("name", "run_id", "created", "executor", "device", "git_commit", "git_dirty", "runner_version",
            "torch_version", "transformer_lens_version")
    print("\nprovenance:")
    for key in keys:
        if key in ds.attrs:
            print(f"  {key:25s} {ds.attrs[key]}")
    failed = np.asarray(ds["status"].values != "ok")
    if failed.any():
        print(f"\n{int(failed.sum())} of {failed.size} points failed; first error: "
              f"{np.asarray(ds['error'].values)[failed].ravel()[0]}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan
    from runner.results.folder import RunFolder

    run = RunFolder(args.run) if Path(args.run).is_dir() else RunFolder.named(args.run, ".")
    folder = run.root
    if not run.spec_file.is_file():
        raise RunnerError(f"no run at {folder}: expected {run.spec_file}",
                          hint="Give a run name (results/<name>) or a run folder.")
    plan = compile_plan(run.spec_file, out=folder)
    shards = run.read_shards()
    status = shards.status
    ok = sum(status.get(pid) == "ok" for pid in plan.ids)
    failed = sum(status.get(pid) == "failed" for pid in plan.ids)
    pending = len(plan) - ok - failed
    state = "complete" if run.result_file.is_file() and pending == 0 else "incomplete"
    print(f"{folder}: {state}\n  finished {ok}\n  failed   {failed}\n  pending  {pending}\n  total    {len(plan)}")
    for path, why in shards.damaged:
        print(f"damaged shard {path.name}: {why} (its points are pending; `runner run` computes them again)")
    if len(shards.versions) > 1:
        print(f"computed by {len(shards.versions)} runner versions: {', '.join(sorted(shards.versions))}")
    if failed:
        print("failed points:")
        for index, pid in enumerate(plan.ids):
            if status.get(pid) == "failed":
                print("  " + (", ".join(f"{k}={v!r}" for k, v in plan.coords_of(index).items()) or "(the only point)"))
    return 0
