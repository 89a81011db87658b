"""Scaling out: a device mesh, logical-axis rules and the shardings of the train state and batches.

gptjax runs on many devices through JAX's own SPMD engine: we only say *where* each array lives
(a `jax.sharding.NamedSharding` over a `Mesh`) and XLA's partitioner inserts the collectives.

The mesh has two axes:

  data   plain data parallelism: the batch is split, parameters are replicated.
  fsdp   fully sharded data parallelism: the batch is split *and* every parameter (with its
         optimizer moments) is split along its ``embed`` axis; XLA gathers a layer's weights
         just before it is used and reduce-scatters its gradients.

``config.mesh = dict(data=-1, fsdp=1)`` is pure data parallelism over all devices;
``dict(data=1, fsdp=-1)`` is FSDP over all devices; ``dict(data=2, fsdp=4)`` mixes them
(FSDP inside groups of 4, replicas across the 2 groups). ``-1`` means "all remaining devices".

Parameters carry logical axis names (``nn.with_logical_partitioning`` in the model); the rules
below, the only place they are mapped to mesh axes, turn them into mesh axes. Every large matrix of
the GPT has an ``embed`` axis, so sharding that axis divides parameter and optimizer memory by
the fsdp size while keeping the rule set one line long.

Several hosts: `maybe_initialize_distributed` calls ``jax.distributed.initialize()`` when the
usual cluster variables are present; every host then computes the same global batch indices but
loads only its own rows (`host_rows`), and `global_batch` assembles the global array. Two
processes on one machine train like one process with all their devices, to float rounding
(tests/training/test_multiprocess.py).
"""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
# The batch is split over both axes: FSDP is data parallel too, it only shards parameters.
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (None: replicated). Every name the model uses must appear here.
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("vocab", None),
    ("mlp", None),
    ("heads", None),
    ("head_dim", None),
    ("pos", None),
)

# Variables that a job launcher sets on every host of a multi-host run.
_CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")


def maybe_initialize_distributed() -> None:
    """Starts `jax.distributed` when launched as one process of a multi-host job.

    With ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set (or under
    SLURM or Open MPI, which JAX detects itself) every host runs the same command; on a single
    machine none of these is set and nothing happens.

    Raises:
      ValueError: ``JAX_NUM_PROCESSES`` or ``JAX_PROCESS_ID`` is not an integer.
    """
    if jax.distributed.is_initialized():
        return
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return  # a single-task SLURM job is a single host
    if not any(os.environ.get(name) for name in _CLUSTER_VARIABLES):
        return
    # note: JAX reads JAX_COORDINATOR_ADDRESS itself but not the other two; without them it
    # looks for SLURM or Open MPI, and fails when there is neither.
    jax.distributed.initialize(
        num_processes=_int_variable("JAX_NUM_PROCESSES"), process_id=_int_variable("JAX_PROCESS_ID")
    )


def _int_variable(name: str) -> int | None:
    """The integer in environment variable ``name``; None when it is unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not an integer; a multi-host job sets JAX_NUM_PROCESSES to the "
            "number of processes and JAX_PROCESS_ID to this one's index (0, 1, ...)."
        ) from None


def resolve_mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Turns ``{"data": -1, "fsdp": 2}`` into concrete sizes whose product is ``num_devices``."""
    unknown = set(mesh_config) - set(MESH_AXES)
    if unknown:
        raise ValueError(
            f"config.mesh has unknown axes {sorted(unknown)}; the mesh axes are {MESH_AXES}."
        )
    sizes = {axis: int(mesh_config[axis]) for axis in MESH_AXES}
    free = [axis for axis, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(
            f"config.mesh={sizes}: at most one axis may be -1 (all remaining devices)."
        )
    if any(size == 0 or size < -1 for size in sizes.values()):
        raise ValueError(f"config.mesh={sizes}: axis sizes must be positive, or -1.")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"config.mesh={sizes}: {num_devices} devices cannot be split into groups of "
                f"{fixed}; choose sizes that divide the device count."
            )
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"config.mesh={sizes} multiplies to {fixed} but there are {num_devices} devices; "
            "make the sizes multiply to the device count, or set one of them to -1."
        )
    return sizes


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """A `Mesh` with axes ("data", "fsdp") over ``devices`` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    sizes = resolve_mesh_shape(mesh_config, len(devices))
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    # Auto axes: we annotate inputs and the state, and XLA's partitioner propagates the rest.
    auto = (AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch is split."""
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def check_batch_size(batch_size: int, grad_accum: int, mesh: Mesh) -> None:
    """Each micro-batch must split evenly over the data-parallel devices."""
    if batch_size % grad_accum:
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by train.grad_accum={grad_accum}."
        )
    micro, ways = batch_size // grad_accum, data_parallel_size(mesh)
    if micro % ways:
        raise ValueError(
            f"the micro-batch of {micro} rows (train.batch_size={batch_size} / "
            f"train.grad_accum={grad_accum}) cannot be split over {ways} data-parallel devices "
            f"(mesh {dict(mesh.shape)}); make it a multiple of {ways}."
        )


def logical_to_sharding(boxed_tree: Any, mesh: Mesh) -> Any:
    """NamedShardings for a tree whose leaves may be `nn.LogicallyPartitioned` boxes.

    Works on abstract trees (from `jax.eval_shape`). Unboxed leaves (step counters, scalars) are
    replicated. Raises ValueError, before anything is compiled, for a logical axis name that no
    rule maps, or a sharded dimension that the mesh axis does not divide.
    """
    known = {name for name, _ in LOGICAL_AXIS_RULES}

    def check(path, leaf):
        if not isinstance(leaf, nn.LogicallyPartitioned):
            return
        where = jax.tree_util.keystr(path)
        for dim, name in zip(leaf.value.shape, leaf.names, strict=True):
            if name is None:
                continue
            if name not in known:
                raise ValueError(
                    f"parameter {where} has logical axis {name!r}, which no rule in "
                    f"gptjax.sharding.LOGICAL_AXIS_RULES maps; add a rule for it."
                )
            axes = dict(LOGICAL_AXIS_RULES)[name]
            axes = (axes,) if isinstance(axes, str) else axes or ()
            ways = math.prod(mesh.shape[a] for a in axes)
            if dim % ways:
                raise ValueError(
                    f"parameter {where}: its {name!r} axis of size {dim} cannot be split over "
                    f"{ways} devices (mesh {dict(mesh.shape)}); choose a mesh whose "
                    f"{'x'.join(axes)} size divides {dim}."
                )

    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
    jax.tree_util.tree_map_with_path(check, boxed_tree, is_leaf=is_box)
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, LOGICAL_AXIS_RULES)


def train_state_shardings(abstract_state: Any, boxed_params: Any, mesh: Mesh) -> Any:
    """Where each leaf of a `TrainState` lives: parameters by the rules, optimizer moments like
    their parameters, counters and keys replicated.

    Args:
      abstract_state: the state from ``jax.eval_shape`` (unboxed parameters).
      boxed_params: the model's abstract parameters with their logical-axis boxes.
      mesh: the device mesh.

    Returns:
      A `TrainState`-shaped tree of `NamedSharding`, for ``jax.jit(..., out_shardings=...)``.
    """
    params = logical_to_sharding(boxed_params, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    # A moment sits at its parameter's path inside the optimizer state (``...mu['blocks_0']...``)
    # and has its shape. Matched by path rather than with ``optax.tree_map_params``, which does
    # not follow partitioned optimizers such as Muon (its masked subtrees).
    by_path = {
        tuple(path): (sharding, leaf.shape)
        for (path, sharding), leaf in zip(
            jax.tree_util.tree_flatten_with_path(params)[0],
            jax.tree_util.tree_leaves(abstract_state.params),
            strict=True,
        )
    }

    def place(path, leaf):
        for start in range(len(path)):
            sharding, shape = by_path.get(tuple(path[start:]), (None, None))
            if sharding is not None and shape == leaf.shape:
                return sharding
        return replicated

    opt_state = jax.tree_util.tree_map_with_path(place, abstract_state.opt_state)
    return abstract_state.replace(
        step=replicated, params=params, opt_state=opt_state, rng=replicated
    )


def batch_sharding(mesh: Mesh, ndim: int = 2, batch_axis: int = 0) -> NamedSharding:
    """Batches are split along their batch axis over every device; other axes replicated."""
    spec = [None] * ndim
    spec[batch_axis] = BATCH_AXES
    return NamedSharding(mesh, PartitionSpec(*spec))


def host_rows(batch_size: int) -> slice:
    """The rows of a global batch that this host loads (all of them on a single host)."""
    per_host, rest = divmod(batch_size, jax.process_count())
    if rest:
        raise ValueError(
            f"train.batch_size={batch_size} cannot be split evenly over "
            f"{jax.process_count()} hosts; make it a multiple of the host count."
        )
    start = jax.process_index() * per_host
    return slice(start, start + per_host)


def global_batch(local_rows: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
    """Assembles global batches from each host's rows (`host_rows`) as sharded arrays.

    Args:
      local_rows: a tree of NumPy arrays holding this host's rows along ``batch_axis``.
      mesh: the device mesh.
      batch_axis: the batch axis (1 for stacked batches ``x_KBT``).
    """

    def assemble(rows):
        shape = list(rows.shape)
        shape[batch_axis] *= jax.process_count()
        sharding = batch_sharding(mesh, rows.ndim, batch_axis)
        return jax.make_array_from_process_local_data(sharding, rows, tuple(shape))

    return jax.tree.map(assemble, local_rows)


def replicated(tree: Any, mesh: Mesh) -> Any:
    """The same value on every device (small tables such as the byte length of each token)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
