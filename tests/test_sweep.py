"""The sweep grammar: generators, names, zip, and dims of the result."""
from __future__ import annotations

import numpy as np
import pytest

import runner
from runner.errors import RunnerError
from runner.plan import compile_plan
from runner.spec import parse_spec
from tests.conftest import BASE_SPEC, write_spec


def axes_of(sweep: str):
    text = BASE_SPEC.split("sweep:")[0] + "sweep:\n" + sweep + "metrics: [logits]\n"
    return parse_spec(text, "s.yaml").axes


def test_generators_follow_numpy_and_python():
    (lin,) = axes_of("  intervention.coefficient: {linspace: [-4, 4, 17]}\n")
    assert list(lin.members[0].values) == np.linspace(-4, 4, 17).tolist()
    (log,) = axes_of("  intervention.coefficient: {logspace: [-2, 1, 4]}\n")
    assert list(log.members[0].values) == np.logspace(-2, 1, 4).tolist()
    (rng,) = axes_of("  seed: {range: [0, 3]}\n")
    assert rng.dim == "seed" and list(rng.members[0].values) == [0, 1, 2]
    (step,) = axes_of("  seed: {range: [10, 0, -4]}\n")
    assert list(step.members[0].values) == [10, 6, 2]


def test_name_renames_a_dim_and_zip_shares_one():
    coef, pair = axes_of("  intervention.coefficient: {values: [0.5, 2.0], name: coef}\n"
                         "  zip:\n    - intervention.layer: [0, 1]\n    - data.random_tokens.seed: [5, 6]\n")
    assert coef.dim == "coef"
    assert pair.dim == "layer" and [m.name for m in pair.members] == ["layer", "seed"]


def test_zip_result_has_one_dim_with_both_coordinates(project):
    text = BASE_SPEC.replace("  intervention.layer: [0, 1]\n",
                             "  zip:\n    - intervention.layer: [0, 1]\n    - intervention.vector.random.seed: [7, 8]\n")
    ds = runner.run(write_spec(project, text))
    assert ds.logits.dims == ("coefficient", "layer", "sample", "vocab")
    assert ds.seed.dims == ("layer",) and ds.seed.values.tolist() == [7, 8]
    # a point with layer 1 used seed 8: compare with a run that sets them directly
    single = BASE_SPEC.replace("{random: {seed: 0}}", "{random: {seed: 8}}").replace(
        "  intervention.layer: [0, 1]\n", "  intervention.layer: [1]\n").replace("name: base", "name: single")
    direct = runner.run(write_spec(project, single, "single.yaml"))
    np.testing.assert_array_equal(ds.logits.sel(layer=1).values, direct.logits.sel(layer=1).values)


def test_a_swept_seed_gives_each_point_its_own_derived_seed(project):
    text = BASE_SPEC.replace("  intervention.layer: [0, 1]\n", "  intervention.layer: [0, 1]\n  seed: [0, 1]\n")
    plan = compile_plan(write_spec(project, text))
    assert plan.dims == ["coefficient", "layer", "seed"] and len(plan.points) == 12
    assert len({p.seed for p in plan.points}) == 12
    assert [p.spec.seed for p in plan.points[:2]] == [0, 1]
    again = compile_plan(write_spec(project, text, "again.yaml"))
    assert [p.seed for p in again.points] == [p.seed for p in plan.points], "seeds are reproducible"


def test_dims_follow_spec_order_and_string_values_become_labels(project):
    text = BASE_SPEC.replace("  intervention.coefficient: {linspace: [-1, 1, 3]}\n  intervention.layer: [0, 1]\n",
                             "  intervention.position: [all, last, 0]\n  intervention.coefficient: [1.0, 2.0]\n")
    ds = runner.run(write_spec(project, text))
    assert ds.logits.dims == ("position", "coefficient", "sample", "vocab")
    assert [str(v) for v in ds.position.values] == ["all", "last", "0"]
    steered_everywhere, steered_last, steered_first = (ds.logits.isel(position=i).values for i in range(3))
    assert not np.allclose(steered_everywhere, steered_last) and not np.allclose(steered_last, steered_first)


@pytest.mark.parametrize("sweep, phrase", [
    ("  intervention.coefficient: [1, 2]\n  intervention.vector.random.seed: {values: [1], name: coefficient}\n",
     "already used by sweep axis"),
    ("  zip:\n    - intervention.layer: [0, 1]\n    - seed: [1, 2, 3]\n", "equal lengths"),
    ("  intervention.layer: {range: [0, 2.5]}\n", "range expects integers"),
    ("  intervention.layer: {linspace: [0, 1, 2], step: 3}\n", "unknown key 'step'"),
    ("  intervention.layer: []\n", "at least one value"),
    ("  execution.cpus_per_task: [1, 2]\n", "cannot be swept"),
])
def test_bad_axes_are_refused(sweep, phrase):
    with pytest.raises(RunnerError, match=phrase):
        axes_of(sweep)


def test_each_point_id_is_its_own_serialised_identity(project):
    """Ids are built once per structure with each point's numbers put in; they equal serialising each point."""
    from runner.plan.facts import inputs_read
    from runner.spec import point_identity

    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    spec = write_spec(project, BASE_SPEC.replace("vector: {random: {seed: 0}}", "vector: {file: v.npy}").replace(
        "{linspace: [-1, 1, 3]}", "[0.0, 1.0, -2.5, 1.0e-300, 0.1]"))  # 1.0 is the default: left out of the identity
    plan = compile_plan(spec)
    assert len(set(plan.ids)) == len(plan) == 10
    for index, point in enumerate(plan.points):
        files, generated = inputs_read(point.spec, project)
        assert plan.ids[index] == point_identity(point.spec, {**files, **generated}) and files
