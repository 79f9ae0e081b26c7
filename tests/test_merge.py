"""Records land on the right grid point whatever the chunking, order or shape of the points."""
from __future__ import annotations

import numpy as np
import xarray as xr

import runner
from tests.conftest import BASE_SPEC, CHUNKING_TOLERANCE, cli, write_spec


def with_ppt(text: str, ppt: int) -> str:
    return text.replace("execution: {executor: local}", f"execution: {{points_per_task: {ppt}}}")


def test_repeated_sweep_values_are_each_recorded(project):
    text = with_ppt(BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "[1.0, 2.0, 1.0]"), 1)
    ds = runner.run(write_spec(project, text))
    assert (ds.status == "ok").all()
    np.testing.assert_array_equal(ds.logits.isel(coefficient=0).values, ds.logits.isel(coefficient=2).values)
    assert not np.array_equal(ds.logits.isel(coefficient=0).values, ds.logits.isel(coefficient=1).values)


def test_reordered_axes_are_a_different_run(project):
    write_spec(project, BASE_SPEC)
    assert cli("run", "spec.yaml", cwd=project).returncode == 0
    swapped = BASE_SPEC.replace("  intervention.coefficient: {linspace: [-1, 1, 3]}\n  intervention.layer: [0, 1]\n",
                                "  intervention.layer: [0, 1]\n  intervention.coefficient: {linspace: [-1, 1, 3]}\n")
    write_spec(project, swapped)
    refused = cli("run", "spec.yaml", cwd=project)
    assert refused.returncode == 2 and "different spec" in refused.stderr
    fresh = runner.run(project / "spec.yaml", fresh=True)
    assert fresh.logits.dims[:2] == ("layer", "coefficient")


def test_points_of_different_shapes_in_one_task_match_one_point_per_task(project):
    text = BASE_SPEC.replace("  intervention.layer: [0, 1]\n", "  data.random_tokens.batch: [4, 2]\n")
    folded = runner.run(write_spec(project, with_ppt(text, 16), "a.yaml"), out=project / "a")
    single = runner.run(write_spec(project, with_ppt(text, 1), "b.yaml"), out=project / "b")
    assert (folded.status == "ok").all() and folded.sizes["sample"] == 4
    xr.testing.assert_allclose(folded.logits, single.logits, **CHUNKING_TOLERANCE)
    assert np.isnan(folded.logits.sel(batch=2, sample=[2, 3])).all()
    assert np.isfinite(folded.logits.sel(batch=2, sample=[0, 1])).all()


def test_points_measuring_different_metrics_share_one_dataset(project):
    text = with_ppt(BASE_SPEC.replace("  intervention.layer: [0, 1]\n", "  metrics: [[kl], [probs]]\n"), 16)
    ds = runner.run(write_spec(project, text))
    assert (ds.status == "ok").all()
    assert np.isnan(ds.kl.isel(metrics=1)).all() and np.isfinite(ds.kl.isel(metrics=0)).all()
    assert np.isnan(ds.probs.isel(metrics=0)).all() and np.isfinite(ds.probs.isel(metrics=1)).all()


def test_a_point_with_a_bad_site_does_not_fail_its_group(project):
    text = BASE_SPEC.replace("init_seed: 0}", "init_seed: 0, attn_only: true}")
    write_spec(project, text.replace("  intervention.layer: [0, 1]\n", "  intervention.hook: [resid_pre, mlp_out]\n"))
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "attn_only" in done.stderr and "sweep.intervention.hook[1]" in done.stderr


def test_out_pointing_at_a_file_is_a_clear_error(project):
    write_spec(project, BASE_SPEC)
    (project / "afile").write_text("x")
    done = cli("run", "spec.yaml", "--out", "afile", cwd=project)
    assert done.returncode == 2 and "is not a folder" in done.stderr and "Traceback" not in done.stderr


def test_only_shards_of_one_shape_share_a_pack(tmp_path):
    """A pack is a plain concatenation: integer dtypes and label order survive, other shapes stay alone."""
    from runner.results.shards import PACK_SHARDS, Packer, read_shard, write_shard

    def shard(index: int, labels: list[str]) -> xr.Dataset:
        return xr.Dataset({"steps": (("point", "role"), np.full((1, len(labels)), index, dtype=np.int32)),
                           "status": ("point", np.array(["ok"], dtype=object)),
                           "error": ("point", np.array([""], dtype=object)),
                           "point_id": ("point", np.array([f"id{index}"], dtype=object))},
                          coords={"point": [index], "role": labels})

    packer, stamp = Packer(tmp_path, {"run_id": "r"}), {"run_id": "r"}
    for i in range(PACK_SHARDS + 5):
        ds = shard(i, ["S1", "A1", "S2"] if i % 2 == 0 else ["I0", "S1"])
        path = tmp_path / f"{i}.nc"
        write_shard(path, ds, stamp)
        packer.add(path, ds)
    packs = sorted(tmp_path.glob("pack-*.nc"))
    assert len(packs) == 0  # 35 and 34 of the two shapes: neither reached 64
    for i in range(PACK_SHARDS + 5, 2 * PACK_SHARDS + 10):
        ds = shard(i, ["S1", "A1", "S2"])
        path = tmp_path / f"{i}.nc"
        write_shard(path, ds, stamp)
        packer.add(path, ds)
    (pack,) = tmp_path.glob("pack-*.nc")
    packed = read_shard(pack)
    assert packed.sizes["point"] == PACK_SHARDS and packed.steps.dtype == np.int32
    assert packed.role.values.tolist() == ["S1", "A1", "S2"]
    assert len(list(tmp_path.glob("*.nc"))) == 2 * PACK_SHARDS + 10 - PACK_SHARDS + 1
