"""Invalid specs: `runner validate` and `runner run` refuse each one, located, with exit 2, writing nothing.

Each case is a small edit of conftest's BASE_SPEC (or a whole small text) and says
where the error must point:

* ``at`` is a substring of the spec text that occurs on exactly one line; the
  error must name that line.  A ``^`` inside it marks the exact column too
  (``"  layer: ^5"``: the column of the ``5``).  An int is a bare line number.
* ``path`` is the dotted spec path printed after ``file:line:col:`` (None: no
  path, or none checked).
* ``phrase`` is a key phrase (or several) of the message, on that same line.

For reference, BASE_SPEC's lines:

     1 name: base
     2 seed: 0
     3 model:
     4   transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
     5 data:
     6   random_tokens: {batch: 4, length: 8, seed: 0}
     7 intervention:
     8   kind: steer
     9   hook: resid_pre
    10   layer: 0
    11   position: all
    12   coefficient: 1.0
    13   vector: {random: {seed: 0}}
    14 sweep:
    15   intervention.coefficient: {linspace: [-1, 1, 3]}
    16   intervention.layer: [0, 1]
    17 metrics: [logits]
    18 execution: {executor: local}
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.conftest import BASE_SPEC, cli, write_spec

SWEEP_LAYER = "  intervention.layer: [0, 1]\n"


def edit(*pairs: str) -> str:
    """BASE_SPEC with each ``old`` replaced by ``new`` (edit(old, new, old2, new2, ...)); each old occurs once."""
    assert len(pairs) % 2 == 0
    text = BASE_SPEC
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} must occur exactly once in the spec being edited"
        text = text.replace(old, new)
    return text


def npy(name: str, shape: tuple[int, ...]) -> Callable[[Path], None]:
    return lambda folder: np.save(folder / name, np.zeros(shape, dtype=np.float32))


def text_file(name: str, content: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(content)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    at: str | int
    path: str | None
    phrase: str | tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    bug: str | None = None       # a known runner bug: the case is xfail(strict=True)


CASES = [
    # ------------------------------------------------------------ the file as a whole
    Case("yaml-syntax-error", edit("seed: 0\n", "seed: 0: 1\n"), "seed: 0: 1", None,
         ("YAML syntax error", "mapping values are not allowed")),
    Case("yaml-tab-indent", edit("  layer: 0\n", "\tlayer: 0\n"), "\tlayer: 0", None,
         ("YAML syntax error", "tab character")),
    Case("yaml-two-documents", BASE_SPEC + "---\nname: other\n", "---", None,
         ("YAML syntax error", "single document")),
    Case("empty-file", "", 1, None, "the spec is empty"),
    Case("only-comments", "# TODO: write the spec\n", 1, None, "the spec is empty"),
    Case("top-level-list", "- name: base\n- seed: 0\n", 1, None, "a spec is a mapping"),
    Case("top-level-scalar", "just some text\n", 1, None, "a spec is a mapping"),
    # ------------------------------------------------------------ YAML that is not plain data
    Case("python-object-tag", edit("name: base", 'name: !!python/object/apply:os.system ["touch pwned"]'),
         "name: ^!!python", "name", ("python/object/apply:os.system", "is not allowed", "plain data only")),
    Case("custom-tag", edit("seed: 0\n", "seed: !foo 0\n"), "seed: ^!foo", "seed",
         "YAML tag '!foo' is not allowed"),
    Case("duplicate-key", edit("seed: 0\n", "seed: 0\nseed: 1\n"), "^seed: 1", "seed", "duplicate key 'seed'"),
    Case("merge-key", edit("seed: 0\n", "seed: 0\n<<: {description: hi}\n"), "^<<:", None, "no merge keys"),
    # ------------------------------------------------------------ keys
    Case("unknown-top-level-key", edit("seed: 0\n", "seed: 0\nmetricz: [kl]\n"), "^metricz", "metricz",
         "unknown key 'metricz' (did you mean 'metrics'?)"),
    Case("unknown-nested-key", edit("  layer: 0", "  layr: 0"), "^layr", "intervention.layr",
         "unknown key 'layr' (did you mean 'layer'?)"),
    Case("unknown-key-in-flow-mapping", edit("length: 8", "lenght: 8"), "^lenght", "data.random_tokens.lenght",
         "did you mean 'length'?"),
    Case("missing-required-vector", edit("  vector: {random: {seed: 0}}\n", ""), "^kind: steer",
         "intervention.vector", "missing required key 'vector'"),
    Case("missing-required-name", edit("name: base\n", ""), 1, "name", "missing required key 'name'"),
    # ------------------------------------------------------------ value types
    Case("string-for-int", edit("  layer: 0", "  layer: '1'"), "layer: ^'1'", "intervention.layer",
         "expected a valid integer, got '1'"),
    Case("list-for-int", edit("n_heads: 4", "n_heads: [4]"), "n_heads: ^[4]", "model.transformer.n_heads",
         "expected a valid integer"),
    Case("bool-for-int", edit("  layer: 0", "  layer: true"), "layer: ^true", "intervention.layer",
         "expected a valid integer, got True"),
    Case("bool-for-float", edit("coefficient: 1.0", "coefficient: true"), "coefficient: ^true",
         "intervention.coefficient", "expected a valid number, got True"),
    Case("float-for-int", edit("seed: 0\n", "seed: 1.5\n"), "seed: ^1.5", "seed", "expected a valid integer, got 1.5"),
    Case("intervention-kind-typo", edit("kind: steer", "kind: stere"), "kind: ^stere", "intervention.kind",
         "did you mean 'steer'?"),
    Case("name-not-a-slug", edit("name: base", "name: My Run"), "name: ^My Run", "name", "a name is a slug"),
    # ------------------------------------------------------------ model
    Case("unknown-model-source", edit("  transformer: {", "  transformerr: {"), "  ^transformerr",
         "model", "unknown key 'transformerr' (did you mean 'transformer'?)"),
    Case("n-heads-not-dividing-d-model", edit("n_heads: 4", "n_heads: 5"), "n_heads: ^5",
         "model.transformer.n_heads", "n_heads (5) must divide d_model (32)"),
    Case("d-vocab-too-small", edit("d_vocab: 20", "d_vocab: 1"), "d_vocab: ^1", "model.transformer.d_vocab",
         "greater than or equal to 2"),
    # ------------------------------------------------------------ data
    Case("two-data-sources", edit("  random_tokens: {batch: 4, length: 8, seed: 0}\n",
                                  "  random_tokens: {batch: 4, length: 8, seed: 0}\n  tokens: [[1, 2]]\n"),
         "^random_tokens", "data", ("exactly one data source", "got 2: random_tokens, tokens")),
    Case("token-id-ge-d-vocab", edit("  random_tokens: {batch: 4, length: 8, seed: 0}",
                                     "  tokens: [[1, 2, 3, 4, 5, 6, 7, 20]]"),
         "tokens: ^[[", "data.tokens", "token id 20 is out of range for d_vocab 20"),
    Case("ragged-token-rows", edit("  random_tokens: {batch: 4, length: 8, seed: 0}", "  tokens: [[1, 2, 3], [4, 5]]"),
         "tokens: ^[[", "data.tokens", "all rows must have the same length"),
    Case("sequence-longer-than-n-ctx", edit("length: 8", "length: 17"), "length: ^17", "data.random_tokens.length",
         "sequences of length 17 exceed the model's context n_ctx=16"),
    # ------------------------------------------------------------ intervention address
    Case("layer-out-of-range", edit("  layer: 0", "  layer: 5", SWEEP_LAYER, ""), "layer: ^5",
         "intervention.layer", "layer 5 is out of range: the model has 2 layers"),
    Case("layer-out-of-range-via-sweep", edit(SWEEP_LAYER, "  intervention.layer: [0, 2]\n"),
         "intervention.layer: [0, ^2]", "sweep.intervention.layer[1]",
         "sweep value 2 for 'intervention.layer': layer 2 is out of range"),
    Case("layer-out-of-range-via-range", edit(SWEEP_LAYER, "  intervention.layer: {range: [0, 3]}\n"),
         "intervention.layer: ^{range", "sweep.intervention.layer", "sweep value 2 for 'intervention.layer'"),
    Case("negative-layer", edit("  layer: 0", "  layer: -1"), "layer: ^-1", "intervention.layer",
         "greater than or equal to 0, got -1"),
    Case("negative-layer-via-sweep", edit(SWEEP_LAYER, "  intervention.layer: [0, -1]\n"),
         "intervention.layer: [0, ^-1]", "sweep.intervention.layer[1]", "sweep value -1 for 'intervention.layer'"),
    Case("head-on-hook-without-heads", edit("  layer: 0\n", "  layer: 0\n  head: 1\n"), "head: ^1",
         "intervention.head", "hook blocks.0.hook_resid_pre has no heads"),
    Case("head-out-of-range", edit("  hook: resid_pre\n  layer: 0\n", "  hook: z\n  layer: 0\n  head: 4\n"),
         "head: ^4", "intervention.head", "head 4 is out of range: the model has 4 heads"),
    Case("position-out-of-range", edit("position: all", "position: 8"), "position: ^8", "intervention.position",
         "position 8 is out of range for sequences of length 8"),
    Case("position-out-of-range-via-sweep",
         edit(SWEEP_LAYER, SWEEP_LAYER + "  intervention.position: {values: [0, 8], name: pos}\n"),
         "{values: [0, ^8]", "sweep.intervention.position.values[1]",
         "sweep value 8 for 'intervention.position': position 8 is out of range"),
    Case("unknown-hook", edit("hook: resid_pre", "hook: resid_preee"), "hook: ^resid_preee", "intervention.hook",
         "unknown hook 'resid_preee'"),
    Case("full-hook-name-and-other-layer", edit("hook: resid_pre", "hook: blocks.0.hook_resid_pre"),
         "intervention.layer: [0, ^1]", "sweep.intervention.layer[1]", "names layer 0 but layer is 1"),
    Case("global-hook-with-layer", edit("hook: resid_pre", "hook: embed", SWEEP_LAYER, ""), "layer: ^0",
         "intervention.layer", "takes no layer"),
    Case("hook-name-containing-layer", edit("hook: resid_pre", "hook: layer_norm"), "hook: ^layer_norm",
         "intervention.hook", "unknown hook 'layer_norm'"),
    # ------------------------------------------------------------ steering vector
    Case("missing-vector-file", edit("{random: {seed: 0}}", "{file: nope.npy}"), "{file: ^nope.npy}",
         "intervention.vector.file", "vector file not found"),
    Case("npy-vector-wrong-length", edit("{random: {seed: 0}}", "{file: short.npy}"), "{file: ^short.npy}",
         "intervention.vector.file", "vector has shape (5,), but blocks.0.hook_resid_pre needs a vector of length 32",
         setup=npy("short.npy", (5,))),
    Case("npy-vector-2d", edit("{random: {seed: 0}}", "{file: row.npy}"), "{file: ^row.npy}",
         "intervention.vector.file", "vector has shape (1, 32)", setup=npy("row.npy", (1, 32))),
    Case("non-npy-vector-file", edit("{random: {seed: 0}}", "{file: vec.txt}"), "{file: ^vec.txt}",
         "intervention.vector.file", "not a readable .npy file", setup=text_file("vec.txt", "0.1 0.2 0.3\n")),
    Case("vector-file-via-sweep", edit("{random: {seed: 0}}", "{file: v.npy}",
                                       SWEEP_LAYER, SWEEP_LAYER + "  intervention.vector.file: [v.npy, gone.npy]\n"),
         "[v.npy, ^gone.npy]", "sweep.intervention.vector.file[1]", "vector file not found",
         setup=npy("v.npy", (32,))),
    Case("two-vector-sources", edit("{random: {seed: 0}}", "{random: {seed: 0}, file: v.npy}"),
         "vector: ^{random", "intervention.vector", "exactly one vector source"),
    Case("random-norm-typo", edit("{random: {seed: 0}}", "{random: {seed: 0, norm: matc}}"), "norm: ^matc",
         "intervention.vector.random.norm", "did you mean 'match'?"),
    Case("contrast-token-out-of-range",
         edit("{random: {seed: 0}}", "{contrast: {positive: {tokens: [[1, 25]]}, negative: {tokens: [[2, 3]]}}}"),
         "positive: {tokens: ^[[1, 25]]", "intervention.vector.contrast.positive.tokens",
         "token id 25 is out of range for d_vocab 20"),
    # ------------------------------------------------------------ sweep
    Case("bad-sweep-path", edit(SWEEP_LAYER, "  intervention.layr: [0, 1]\n"), "^intervention.layr",
         "sweep.intervention.layr", ("does not name a field of the spec", "did you mean 'intervention.layer'?")),
    Case("sweep-path-into-unknown-top-level", edit(SWEEP_LAYER, "  optimizer.lr: [0.1, 0.01]\n"), "^optimizer.lr",
         "sweep.optimizer.lr", ("no 'optimizer'", "the spec has keys")),
    Case("sweep-path-top-level-typo", edit(SWEEP_LAYER, "  interventions.layer: [0, 1]\n"), "^interventions.layer",
         "sweep.interventions.layer", "did you mean 'intervention'?"),
    Case("sweep-path-through-scalar", edit(SWEEP_LAYER, SWEEP_LAYER + "  seed.value: [1, 2]\n"), "^seed.value",
         "sweep.seed.value", "no 'value'"),
    Case("bad-sweep-value-type", edit(SWEEP_LAYER, "  intervention.layer: [0, one]\n"),
         "intervention.layer: [0, ^one]", "sweep.intervention.layer[1]",
         "sweep value 'one' for 'intervention.layer': expected a valid integer"),
    Case("float-values-for-int-path", edit(SWEEP_LAYER, "  intervention.layer: {linspace: [0, 1, 2]}\n"),
         "intervention.layer: ^{linspace", "sweep.intervention.layer", "sweep value 0.0 for 'intervention.layer'"),
    Case("sweep-axis-not-a-list", edit(SWEEP_LAYER, "  intervention.layer: 3\n"), "intervention.layer: ^3",
         "sweep.intervention.layer", "expected a list of values"),
    Case("sweep-axis-empty", edit(SWEEP_LAYER, "  intervention.layer: []\n"), "intervention.layer: ^[]",
         "sweep.intervention.layer", "at least one value"),
    Case("sweep-axis-unknown-key", edit(SWEEP_LAYER, "  intervention.layer: {values: [0, 1], nmae: l}\n"),
         "intervention.layer: ^{values", "sweep.intervention.layer", "unknown key 'nmae'"),
    Case("linspace-wrong-arity", edit("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1]}"), "{linspace: ^[-1, 1]}",
         "sweep.intervention.coefficient.linspace", "linspace expects [start, stop, count]"),
    Case("linspace-float-count", edit("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 3.0]}"),
         "{linspace: ^[-1, 1, 3.0]}", "sweep.intervention.coefficient.linspace", "count a positive integer"),
    Case("range-with-float", edit(SWEEP_LAYER, "  intervention.layer: {range: [0, 1.5]}\n"), "{range: ^[0, 1.5]}",
         "sweep.intervention.layer.range", "range expects integers"),
    Case("range-step-zero", edit(SWEEP_LAYER, "  intervention.layer: {range: [0, 2, 0]}\n"), "{range: ^[0, 2, 0]}",
         "sweep.intervention.layer.range", "step not 0"),
    Case("zip-unequal-lengths",
         edit("  intervention.coefficient: {linspace: [-1, 1, 3]}\n" + SWEEP_LAYER,
              "  zip: [{intervention.coefficient: [0.5, 1.0, 2.0]}, {intervention.layer: [0, 1]}]\n"),
         "zip: ^[", "sweep.zip", "zipped axes must have equal lengths, got [3, 2]"),
    Case("zip-single-member", edit(SWEEP_LAYER, "  zip: [{intervention.layer: [0, 1]}]\n"), "zip: ^[",
         "sweep.zip", "at least two single-key mappings"),
    Case("two-axes-same-dim-name", edit(SWEEP_LAYER, SWEEP_LAYER + "  seed: {values: [0, 1], name: layer}\n"),
         "^seed: {values", "sweep.seed", "dim name 'layer' is already used by sweep axis 'intervention.layer'"),
    Case("dim-name-clashes-with-metric-dim", edit(SWEEP_LAYER, SWEEP_LAYER + "  seed: {values: [0, 1], name: sample}\n"),
         "^seed: {values", "sweep.seed", "dim name 'sample' clashes with a dim of metric 'logits'"),
    Case("dim-name-reserved-point", edit(SWEEP_LAYER, SWEEP_LAYER + "  seed: {values: [0, 1], name: point}\n"),
         "seed: ^{values", "sweep.seed", "dim name 'point' is reserved"),
    Case("dim-name-not-identifier", edit(SWEEP_LAYER, "  intervention.layer: {values: [0, 1], name: my-dim}\n"),
         "name: ^my-dim", "sweep.intervention.layer.name", "a dim name must be an identifier"),
    Case("sweeping-name", edit(SWEEP_LAYER, SWEEP_LAYER + "  name: [a, b]\n"), "^name: [a, b]", "sweep.name",
         "'name' cannot be swept"),
    Case("sweeping-execution", edit(SWEEP_LAYER, SWEEP_LAYER + "  execution.points_per_task: [1, 2]\n"),
         "^execution.points_per_task", "sweep.execution.points_per_task", "'execution' cannot be swept"),
    Case("n-heads-via-sweep", edit(SWEEP_LAYER, "  model.transformer.n_heads: [4, 5]\n"), "n_heads: [4, ^5]",
         "sweep.model.transformer.n_heads[1]", "n_heads (5) must divide d_model (32)"),
    Case("sequence-length-via-sweep", edit(SWEEP_LAYER, "  data.random_tokens.length: [8, 17]\n"),
         "length: [8, ^17]", "sweep.data.random_tokens.length[1]", "sequences of length 17 exceed"),
    Case("dim-name-clashes-with-status-variable",
         edit(SWEEP_LAYER, SWEEP_LAYER + "  seed: {values: [0, 1], name: status}\n"),
         "^seed: {values", "sweep.seed", "clashes with a variable of every result"),
    Case("dim-name-clashes-with-metric-variable",
         edit(SWEEP_LAYER, SWEEP_LAYER + "  seed: {values: [0, 1], name: logits}\n"),
         "^seed: {values", "sweep.seed", "clashes with a variable"),
    # ------------------------------------------------------------ metrics
    Case("unknown-metric", edit("metrics: [logits]", "metrics: [logits, klx]"), "[logits, ^klx]", "metrics[1]",
         ("unknown metric 'klx'", "did you mean 'kl'?")),
    Case("unknown-metric-mapping", edit("metrics: [logits]", "metrics: [{logit_dif: {tokens: [1, 2]}}]"),
         "metrics: [^{logit_dif", "metrics[0]", "did you mean 'logit_diff'?"),
    Case("logit-diff-token-out-of-range", edit("metrics: [logits]", "metrics: [logits, {logit_diff: {tokens: [1, 20]}}]"),
         "[logits, ^{logit_diff", "metrics[1]", "token id 20 is out of range for d_vocab 20"),
    Case("logit-diff-one-token", edit("metrics: [logits]", "metrics: [{logit_diff: {tokens: [1]}}]"),
         "tokens: ^[1]", "metrics[0].logit_diff.tokens", "at least 2 items"),
    Case("metric-listed-twice", edit("metrics: [logits]", "metrics: [logits, logits]"), "metrics: [logits, logits]",
         "metrics", "metric 'logits' is listed twice"),
    # ------------------------------------------------------------ execution
    Case("unknown-executor", edit("executor: local", "executor: slurm"), "executor: ^slurm", "execution.executor",
         "expected 'local' or 'ray', got 'slurm'"),
    Case("points-per-task-zero", edit("{executor: local}", "{executor: local, points_per_task: 0}"),
         "points_per_task: ^0", "execution.points_per_task", "points_per_task must be at least 1"),
    Case("cpus-per-task-zero", edit("{executor: local}", "{executor: local, cpus_per_task: 0}"),
         "cpus_per_task: ^0", "execution.cpus_per_task", "greater than or equal to 1"),
    # ------------------------------------------------------------ odd keys
    Case("negative-seed", edit("name: base\nseed: 0", "name: base\nseed: -1"),
         "seed: ^-1", "seed", "greater than or equal to 0"),
    Case("self-referencing-alias", edit("model:\n  transformer:", "model: &m\n  loop: *m\n  transformer:"), "model: ^&m", "model.loop",
         "alias refers to a mapping or list that contains it"),
    Case("null-key", edit("seed: 0\n", "seed: 0\n~: 2\n"), "^~: 2", None, "keys must be strings, got None"),
]


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


def expected_place(text: str, at: str | int) -> tuple[int, int | None]:
    """(line, column or None) that ``at`` denotes in ``text`` (see the module docstring)."""
    if isinstance(at, int):
        return at, None
    needle = at.replace("^", "")
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"marker {needle!r} must be on exactly one line of the spec, found on lines {hits}"
    line = hits[0]
    if "^" not in at:
        return line, None
    return line, text.splitlines()[line - 1].index(needle) + at.index("^") + 1


def located_pattern(line: int, col: int | None, path: str | None, phrase: str) -> re.Pattern:
    """A problem line of stderr: ``[error: ]spec.yaml:LINE:COL: [PATH: ]...PHRASE...``."""
    where = re.escape(f"spec.yaml:{line}:") + (str(col) if col else r"\d+") + ": "
    where += re.escape(f"{path}: ") if path else ""
    return re.compile(r"^(error: )?" + where + ".*" + re.escape(phrase), re.MULTILINE)


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_refused(proc, *, verb: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"`runner {verb}` exited {proc.returncode}, expected 2:\n{output}"
    assert "Traceback" not in output, output


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_invalid_spec_is_refused_with_its_place(case: Case, project: Path) -> None:
    if case.setup:
        case.setup(project)
    spec = write_spec(project, case.text)
    text = spec.read_text()
    line, col = expected_place(text, case.at)
    before = files_in(project)

    validate = cli("validate", "spec.yaml", cwd=project)
    assert_refused(validate, verb="validate")
    for phrase in (case.phrase,) if isinstance(case.phrase, str) else case.phrase:
        pattern = located_pattern(line, col, case.path, phrase)
        assert pattern.search(validate.stderr), (
            f"expected a problem at spec.yaml:{line}:{col or '*'} path {case.path!r} saying {phrase!r}; "
            f"got:\n{validate.stderr}")
    assert files_in(project) == before, "validate wrote something"

    run = cli("run", "spec.yaml", cwd=project, timeout=60)
    assert_refused(run, verb="run")
    assert not (project / "results").exists(), "run on an invalid spec created results/"
    assert files_in(project) == before, "run on an invalid spec wrote something"
    assert not (project / "pwned").exists(), "a YAML tag executed code"


# ---------------------------------------------------------------- several problems in one spec

MULTI_CASES = [
    pytest.param(  # schema stage: three unrelated mistakes, all reported in one go
        edit("length: 8", "lenght: 8", "  layer: 0", "  layr: 0", "executor: local", "executor: slurm"),
        [("^lenght", "data.random_tokens.lenght", "did you mean 'length'?"),
         ("^layr", "intervention.layr", "did you mean 'layer'?"),
         ("executor: ^slurm", "execution.executor", "got 'slurm'")],
        id="schema-stage"),
    pytest.param(  # plan stage: model-dependent checks of the same grid points
        edit("position: all", "position: 8", "metrics: [logits]", "metrics: [logits, {logit_diff: {tokens: [1, 20]}}]"),
        [("position: ^8", "intervention.position", "position 8 is out of range"),
         ("[logits, ^{logit_diff", "metrics[1]", "token id 20 is out of range")],
        id="plan-stage"),
    pytest.param(  # sweep stage: a bad value on each of two axes
        edit("{linspace: [-1, 1, 3]}", "[0.5, bad]", SWEEP_LAYER, "  intervention.layer: [0, -1]\n"),
        [("[0.5, ^bad]", "sweep.intervention.coefficient[1]", "expected a valid number"),
         ("intervention.layer: [0, ^-1]", "sweep.intervention.layer[1]", "greater than or equal to 0")],
        id="sweep-values"),
]


@pytest.mark.parametrize("text, problems", MULTI_CASES)
def test_several_problems_are_each_reported(text: str, problems: list, project: Path) -> None:
    write_spec(project, text)
    proc = cli("validate", "spec.yaml", cwd=project)
    assert_refused(proc, verb="validate")
    lines = set()
    for at, path, phrase in problems:
        line, col = expected_place(text, at)
        lines.add(line)
        assert located_pattern(line, col, path, phrase).search(proc.stderr), (
            f"missing the problem at line {line} ({path}: {phrase!r}); got:\n{proc.stderr}")
    assert len(lines) >= 2
    run = cli("run", "spec.yaml", cwd=project, timeout=60)
    assert_refused(run, verb="run")
    assert not (project / "results").exists()


# ---------------------------------------------------------------- refused before torch is imported

@pytest.mark.parametrize("text", [
    pytest.param(edit("  layer: 0", "  layr: 0"), id="schema-error"),
    pytest.param(edit(SWEEP_LAYER, "  intervention.layer: [0, 2]\n"), id="plan-error"),
])
def test_run_refuses_before_importing_torch(text: str, project: Path) -> None:
    write_spec(project, text)
    code = ("import sys\nfrom runner.cli import main\nrc = main(['run', 'spec.yaml'])\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "no torch" in proc.stdout, proc.stdout + proc.stderr
    assert not (project / "results").exists()
