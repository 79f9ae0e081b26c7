"""The command line: validate, schema, plan, run, status, show, plot, ls.

Every verb takes ``-v`` (debug detail: executor decisions, per-task timings, shard
packing) and ``-q`` (errors only; the exit code says the rest), before or after the
verb. A run's ``run.log`` gets everything whatever the terminal shows.

Exit codes: 0 all ok; 1 finished with failed points (result written); 2 refused
before running (a bad spec or input, a busy or foreign folder, impossible
resources) with one located message; 3 stopped by the machine (disk full, out of
memory, cluster lost), finished points kept. None of these prints a traceback;
only a bug in runner itself does (exit 70).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from runner.console import NORMAL, QUIET, VERBOSE, close_run_logs, detail, run_log, say, set_verbosity
from runner.errors import RunnerError

EXIT_FAILED_POINTS = 1
EXIT_BUG = 70  # sysexits' EX_SOFTWARE
ERROR = logging.ERROR

# -v / -q, for the top parser and every verb (``parents=[_common]``): `runner -q run S` and `runner run -q S`
_common = argparse.ArgumentParser(add_help=False)
_volume = _common.add_mutually_exclusive_group()
_volume.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                     help="say more: debug detail (executor decisions, per-task timings, shard packing)")
_volume.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="say only errors (the exit code says the rest; show, status, ls, plan and schema still "
                          "print what they were asked for); no progress")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", False)
    before = set_verbosity(VERBOSE if verbose else QUIET if quiet else NORMAL)
    try:
        return _dispatch(args)
    finally:
        close_run_logs()
        set_verbosity(before)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the verb; its errors become a message and an exit code."""
    try:
        return args.func(args)
    except RunnerError as exc:
        say(f"error: {exc}", level=ERROR)
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted: finished tasks are kept; rerun the same command to resume", level=ERROR)
        return 130
    except BrokenPipeError:  # `runner schema | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        import traceback

        say(traceback.format_exc().rstrip(), level=ERROR)
        say("internal error: this is a bug in runner, please report it with the traceback above", level=ERROR)
        return EXIT_BUG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner", description="Declarative interpretability experiments.",
                                     parents=[_common])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("validate", parents=[_common],
                         help="check specs (schema, sweep, model-dependent checks); writes nothing")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", parents=[_common], help="print the JSON Schema of the spec language")
    p.set_defaults(func=cmd_schema)

    p = verbs.add_parser("init", parents=[_common], help="write a commented starter spec that validates")
    p.add_argument("kind", choices=INIT_KINDS, metavar="KIND", help=f"one of {', '.join(INIT_KINDS)}")
    p.add_argument("--out", metavar="FILE", help="where to write (default ./KIND.yaml; - prints it); "
                                                 "an existing file is never overwritten")
    p.set_defaults(func=cmd_init)

    p = verbs.add_parser("plan", parents=[_common],
                         help="show dims, points, tasks, resources and output folder; writes nothing")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--out", metavar="DIR", help="run folder instead of results/<name>/")
    p.set_defaults(func=cmd_plan)

    p = verbs.add_parser("run", parents=[_common],
                         help="run a spec; a rerun resumes from finished shards; run.log in the run folder")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--executor", choices=["local", "ray"], help="override execution.executor")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (ray executor; default: execution.address, then $RAY_ADDRESS, "
                        "else a local Ray started for the run)")
    p.add_argument("--out", metavar="DIR", help="run folder instead of results/<name>/")
    p.add_argument("--fresh", action="store_true", help="discard earlier results in the run folder")
    p.set_defaults(func=cmd_run)

    _result_verbs(verbs)
    return parser


def _result_verbs(verbs: argparse._SubParsersAction) -> None:
    """The verbs that read runs: show, plot, status, ls."""
    p = verbs.add_parser("show", parents=[_common], help="a run's result: dims, variables, provenance, failed "
                         "points, a table of one variable over the sweep and its highest and lowest points")
    p.add_argument("run", metavar="NAME|SPEC|DIR|FILE")
    p.add_argument("--var", metavar="NAME", help="the variable to tabulate (default: the spec's figure.var, "
                   "else success, else the first of one value a point)")
    p.set_defaults(func=cmd_show)

    _plot_verb(verbs)

    p = verbs.add_parser("status", parents=[_common], help="finished / pending / failed points of a run")
    p.add_argument("run", metavar="NAME|DIR")
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser("ls", parents=[_common], help="the runs under results/ (or DIR): date, kind, points, status")
    p.add_argument("dir", nargs="?", metavar="DIR", help="a results folder, a project folder or a run folder")
    p.set_defaults(func=cmd_ls)


def _plot_verb(verbs: argparse._SubParsersAction) -> None:
    """The plot verb and its options (a function of its own: _parser is long enough)."""
    p = verbs.add_parser("plot", parents=[_common], help="a figure of one variable of a run (default: the spec's "
                         "figure:), laid out from its dims; writes <run folder>/<var>.png")
    p.add_argument("run", metavar="NAME|SPEC|DIR|FILE")
    p.add_argument("var", nargs="?", metavar="VAR", help="the variable (default: the spec's figure.var, else success, "
                   "logit_diff, restored_fraction, kl, ...)")
    p.add_argument("--x", metavar="DIM", help="the dim along the x axis")
    p.add_argument("--hue", metavar="DIM", help="one line per value of this dim")
    p.add_argument("--col", metavar="DIM", help="one panel per value of this dim")
    p.add_argument("--sel", metavar="DIM=VALUE", action="append", default=[],
                   help="plot at one value of a dim (repeatable), e.g. --sel layer=1")
    p.add_argument("--out", metavar="FILE", help="where to write (.png, .pdf, .svg); default <run folder>/<var>.png")
    p.set_defaults(func=cmd_plot)


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    errors = []
    for spec in args.specs:
        try:
            plan = compile_plan(spec, require_runs=False)
        except RunnerError as exc:
            errors.append(exc)
            say(f"error: {exc}", level=ERROR)
            continue
        say(f"{spec}: ok ({len(plan)} point{'' if len(plan) == 1 else 's'})", stdout=True)
        for note in plan.notes:
            say(f"  note: {note}", stdout=True)
    return 2 if errors else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from runner.spec.schema import schema_text

    sys.stdout.write(schema_text())  # the text of runner/spec/schema.json
    return 0


INIT_KINDS = ("steer", "patch", "ablate", "train", "rtg")  # runner.spec.templates.TEMPLATES (not imported to parse)


def cmd_init(args: argparse.Namespace) -> int:
    from runner.spec.templates import schema_path, starter

    if args.out == "-":
        sys.stdout.write(starter(args.kind, schema_path(None)))
        return 0
    out = Path(args.out or f"{args.kind}.yaml")
    text = starter(args.kind, schema_path(out), file=str(out))
    try:
        with open(out, "x") as f:  # "x": never overwrite, even a file made a moment ago
            f.write(text)
    except FileExistsError:
        raise RunnerError(f"{out} already exists, and runner init never overwrites a file",
                          hint="Give another name with --out FILE, or move the existing file away.") from None
    except OSError as exc:
        raise RunnerError(f"cannot write {out}: {exc.strerror or exc}") from None
    say(f"wrote {out}; check it with `runner validate {out}`, then `runner run {out}`", stdout=True)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    print(compile_plan(args.spec, out=args.out).describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from runner.plan import compile_plan

    plan = compile_plan(args.spec, out=args.out)
    from runner.execute.driver import execute
    from runner.results.table import evaluation

    log = run_log(args.argv, args.executor or plan.spec.execution.executor)  # written once the folder is ready
    detail(plan.describe())
    outcome = execute(plan, executor=args.executor, address=args.address, fresh=args.fresh,
                      ready=lambda folder: log.open(folder.log_file))
    total, skipped = len(plan), len(plan.not_applicable)
    counts = f"{total - skipped - len(outcome.failed)} of {total} points ok"
    if skipped:
        counts += f", {skipped} not applicable"
    say(f"wrote {outcome.folder.result_file}  ({counts})", stdout=True)
    for line in undefined_counts(outcome.dataset):
        say(f"  {line}", stdout=True)
    for line in evaluation(outcome.dataset):  # a train run: each agent's success, and over seeds
        say(f"  {line}", stdout=True)
    if outcome.failed:
        say(f"{len(outcome.failed)} of {total} points failed:", level=ERROR)
        for coords, message in outcome.failed[:20]:
            where = ", ".join(f"{k}={v!r}" for k, v in coords.items()) or "(the only point)"
            say(f"  {where}: {message}", level=ERROR)
        if len(outcome.failed) > 20:
            say(f"  ... and {len(outcome.failed) - 20} more (see the error variable)", level=ERROR)
        return EXIT_FAILED_POINTS
    return 0


def undefined_counts(ds) -> list[str]:
    """For each variable that can be undefined by definition and is undefined somewhere, how many of its values
    (of ok points) are."""
    import numpy as np

    ok = ds["status"] == "ok"
    lines = []
    for name, var in ds.data_vars.items():
        if "undefined" in var.attrs:
            counted = ok.any(dim=[d for d in ok.dims if d not in var.dims]).broadcast_like(var)  # vector_cosine
            n = int((np.isnan(var) & counted).sum())
            if n == 0:  # defined everywhere: no news
                continue
            lines.append(f"{name}: {n} of {int(counted.sum())} values undefined ({var.attrs['undefined']})")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    import numpy as np

    from runner.results.load import load, result_path
    from runner.results.table import choose, evaluation, extremes, table

    ds, path = load(args.run), result_path(args.run)
    var = choose(ds, args.var, _spec_text(path.parent / "spec.yaml"))  # a wrong --var is refused before printing
    print(f"{path}\n")
    print(ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds)
    keys = ("name", "run_id", "created", "executor", "device", "git_commit", "git_dirty", "runner_version",
            "torch_version", "transformer_lens_version")
    if getattr(args, "verbose", 0):  # every attr but the spec's text (spec.yaml beside result.nc holds it)
        keys = tuple(k for k in ds.attrs if k != "spec_yaml")
    print("\nprovenance:")
    for key in keys:
        if key in ds.attrs:
            print(f"  {key:25s} {ds.attrs[key]}")
    failed = ~np.isin(np.asarray(ds["status"].values), ("ok", "not_applicable"))
    if failed.any():
        print(f"\n{int(failed.sum())} of {failed.size} points failed; first error: "
              f"{np.asarray(ds['error'].values)[failed].ravel()[0]}")
    if var is not None:
        print("\n" + "\n".join(filter(None, [table(ds, var), extremes(ds, var)])))
    if evaluation(ds):
        print("\nevaluation:\n" + "\n".join(f"  {line}" for line in evaluation(ds)))
    return 0


def _spec_text(path: Path) -> str | None:
    """A run folder's spec.yaml, if there is one to read (its figure.var names the variable to show)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cmd_ls(args: argparse.Namespace) -> int:
    from runner.results.listing import listing

    if args.dir is None and not Path("results").is_dir():
        print("no runs here: there is no results/ folder")
        return 0
    print(listing(args.dir or "results", verbose=bool(getattr(args, "verbose", 0))))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from runner.results.load import load, result_path
    from runner.results.figures import run_figure
    from runner.results.plot import default_var, plot, select

    path = result_path(args.run)
    ds, figure = load(path), run_figure(args.run, path)
    var = args.var or default_var(ds, figure)
    out = Path(args.out) if args.out else path.parent / f"{var}.png"
    plot(select(ds, args.sel), var, x=args.x, hue=args.hue, col=args.col, out=out, figure=figure)
    say(f"wrote {out}", stdout=True)
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
    pending = len(plan) - ok - failed - len(plan.not_applicable)
    state = "complete" if run.result_file.is_file() and pending == 0 else "incomplete"
    skipped = f"\n  not applicable {len(plan.not_applicable)}" if plan.not_applicable else ""
    print(f"{folder}: {state}\n  finished {ok}\n  failed   {failed}\n  pending  {pending}{skipped}\n  total    {len(plan)}")
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
