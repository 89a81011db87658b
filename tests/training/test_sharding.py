"""Mesh and sharding rules on the host: validation and the specs they produce.

The multi-device behaviour (losses on 1 vs 8 devices, FSDP shard shapes, checkpoints across
meshes) is tested in tests/training/test_multidevice.py, in subprocesses with 8 simulated CPU
devices; several processes training together in tests/training/test_multiprocess.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from gptjax.training import sharding


def test_resolve_mesh_shape_fills_the_free_axis():
    assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 1}, 8) == {"data": 8, "fsdp": 1}
    assert sharding.resolve_mesh_shape({"data": 2, "fsdp": -1}, 8) == {"data": 2, "fsdp": 4}
    assert sharding.resolve_mesh_shape({"data": 1, "fsdp": 1}, 1) == {"data": 1, "fsdp": 1}


@pytest.mark.parametrize(
    "mesh_config, match",
    [
        ({"data": 3, "fsdp": 1}, "multiplies to 3 but there are 8 devices"),
        ({"data": 3, "fsdp": -1}, "cannot be split into groups of 3"),
        ({"data": -1, "fsdp": -1}, "at most one axis may be -1"),
        ({"data": 0, "fsdp": -1}, "must be positive"),
        ({"data": -1, "fsdp": 1, "model": 2}, "unknown axes"),
    ],
)
def test_resolve_mesh_shape_rejects_bad_meshes(mesh_config, match):
    with pytest.raises(ValueError, match=match):
        sharding.resolve_mesh_shape(mesh_config, 8)


def test_check_batch_size_names_the_fix():
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    sharding.check_batch_size(12, 3, mesh)
    with pytest.raises(ValueError, match="not divisible by train.grad_accum"):
        sharding.check_batch_size(12, 5, mesh)


def _boxed(shape, names):
    return nn.LogicallyPartitioned(jax.ShapeDtypeStruct(shape, jnp.float32), names)


def test_rules_map_embed_to_fsdp_and_replicate_the_rest():
    mesh = sharding.make_mesh({"data": 1, "fsdp": -1})
    tree = {
        "w": _boxed((8, 32), ("embed", "mlp")),
        "b": _boxed((32,), ("mlp",)),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
    }
    shardings = sharding.logical_to_sharding(tree, mesh)
    assert shardings["w"].spec == P("fsdp", None)
    assert shardings["b"].spec == P(None)
    assert shardings["step"].spec == P()


def test_unmapped_logical_axis_is_a_clear_error():
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    with pytest.raises(ValueError, match="logical axis 'experts', which no rule"):
        sharding.logical_to_sharding({"w": _boxed((4, 4), ("experts", "embed"))}, mesh)


def test_batch_sharding_splits_the_leading_axis_over_all_devices():
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    assert sharding.batch_sharding(mesh, 2).spec == P(("data", "fsdp"), None)
    assert sharding.host_rows(12) == slice(0, 12)  # a single host loads every row


def test_host_rows_split_the_batch_between_hosts(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    rows = []
    for index in (0, 1):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        rows.append(sharding.host_rows(12))
    assert rows == [slice(0, 6), slice(6, 12)]
    with pytest.raises(ValueError, match="cannot be split evenly over 2 hosts"):
        sharding.host_rows(13)


CLUSTER_VARIABLES = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
    "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
)  # fmt: skip


@pytest.fixture
def initialize(monkeypatch):
    """Records the calls of ``jax.distributed.initialize`` instead of starting anything."""
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    return calls


def test_distributed_starts_with_the_process_counts_of_the_environment(initialize, monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    sharding.maybe_initialize_distributed()
    # JAX reads the coordinator's address itself, but neither count.
    assert initialize == [{"num_processes": 2, "process_id": 1}]


def test_a_cluster_launcher_leaves_the_counts_to_jax(initialize, monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    sharding.maybe_initialize_distributed()
    assert initialize == [{"num_processes": None, "process_id": None}]


def test_one_machine_or_one_slurm_task_starts_nothing(initialize, monkeypatch):
    sharding.maybe_initialize_distributed()
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    sharding.maybe_initialize_distributed()
    assert initialize == []


def test_a_process_id_that_is_not_a_number_is_a_clear_error(initialize, monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    monkeypatch.setenv("JAX_PROCESS_ID", "first")
    with pytest.raises(ValueError, match="JAX_PROCESS_ID='first' is not an integer"):
        sharding.maybe_initialize_distributed()
    assert initialize == []
