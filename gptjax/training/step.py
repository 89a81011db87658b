"""The optimisation step: loss, optimizer, train state and `train_step` (tutorial part 9).

Everything here is a pure function of its inputs; the loop (`gptjax.training.loop`) jits
`train_steps` once, with the state donated so parameters and optimizer moments are updated in
place.

* Loss: mean cross-entropy of the next token, in float32 whatever the compute dtype.
* Optimizer: global-norm clipping, then AdamW. Weight decay applies to
  parameters with two or more dimensions (dense kernels, embedding tables) and never to biases or
  norm scales, even the per-head attention biases of shape (N, H): decaying a bias or a scale
  towards zero does not regularise anything, it only fights the normalisation.
* ``optimizer="muon"`` instead (Jordan et al. 2024, optax's ``optax.contrib.muon``): the weight
  matrices of the blocks take Muon's update, their momentum orthogonalised by a Newton-Schulz
  iteration, at the rate ``muon_lr``; the embeddings, the output head, biases and norm scales
  keep AdamW at ``lr`` (see `muon_dimensions`). Weight decay then applies to Muon's matrices
  only.
* Learning rate: linear warm-up to ``lr`` over ``warmup_steps`` (step s gets
  ``lr * (s + 1) / (warmup_steps + 1)``, so the first step already learns), then
  ``schedule="cosine"``: a cosine decay to ``min_lr`` at the last step, as nanoGPT does; or
  ``schedule="wsd"`` (warm-up, stable, decay): ``lr`` held, then a straight line down to
  ``min_lr`` over the last ``cooldown`` fraction of the steps.
* Gradient accumulation: the batch of B sequences is cut into ``grad_accum`` micro-batches of equal
  size whose gradients are averaged, so the update equals that of the whole batch at once (up to
  float rounding) while only one micro-batch's activations are alive at a time.
* Randomness: the dropout key of step s is ``fold_in(rng, s)`` (and of micro-batch i,
  ``fold_in(fold_in(rng, s), i)``): nothing depends on how many steps ran in this process.
"""

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
import optax.contrib

from gptjax.model import kernels as model_kernels
from gptjax.model import muon_kernel


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, a plain pytree (checkpointed whole).

    ``apply_fn``, ``tx`` and ``grad_accum`` are static (part of the tree structure, not leaves).
    """

    step: jax.Array  # int32 scalar: optimisation steps done
    params: Any  # unboxed float32 parameters
    opt_state: Any
    rng: jax.Array  # uint32[2]: base key of the dropout keys
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    grad_accum: int = flax.struct.field(pytree_node=False, default=1)

    def checkpoint_items(self) -> dict[str, Any]:
        """The leaves as a plain dict, the form saved in checkpoints."""
        return {
            "step": self.step,
            "params": self.params,
            "opt_state": self.opt_state,
            "rng": self.rng,
        }


OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


def learning_rate(
    step: jax.Array,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    cooldown: float = 1.0,
) -> jax.Array:
    """Linear warm-up, then a cosine (or, for "wsd", a held-then-linear) decay to ``min_lr``.

    Both decays reach ``min_lr`` at ``total_steps``, one step after the last step taken. The
    "wsd" decay starts ``round(cooldown * total_steps)`` steps before that end (never before the
    warm-up ends).
    """
    step = jnp.asarray(step, jnp.float32)
    warm = lr * (step + 1.0) / (warmup_steps + 1.0)
    if schedule == "cosine":
        ratio = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
        decayed = min_lr + 0.5 * (1.0 + jnp.cos(math.pi * ratio)) * (lr - min_lr)
    else:
        start = max(total_steps - round(cooldown * total_steps), warmup_steps)
        ratio = jnp.clip((step - start) / max(total_steps - start, 1), 0.0, 1.0)
        decayed = lr + ratio * (min_lr - lr)
    return jnp.where(step < warmup_steps, warm, decayed)


def decay_mask(params: Any) -> Any:
    """True for the parameters that get weight decay: weight matrices and embedding tables.

    The rule is "two or more dimensions, and not a bias or a norm scale": the attention's
    per-head biases have shape (N, H), two dimensions, yet they are biases.
    """

    def decayed(path, p):
        name = getattr(path[-1], "key", None)
        return p.ndim >= 2 and name not in ("bias", "scale")

    return jax.tree_util.tree_map_with_path(decayed, params)


def muon_dimensions(params: Any) -> Any:
    """How Muon sees each parameter as a matrix (inputs x outputs), or None for AdamW's.

    Muon updates the weight matrices inside the blocks: the MLP's ``fc`` and ``proj`` (already
    2-D), the attention's ``query``, ``key`` and ``value`` kernels ``(D, N, H)``, as ``D x (N H)``
    matrices, and its output ``proj`` kernel ``(N, H, D)``, as ``(N H) x D``. Everything else
    (embeddings, the untied output head, biases, norm scales) is left to AdamW, as in the Muon
    paper: an embedding is a lookup table, not a map between vector spaces.
    """
    from optax.contrib import MuonDimensionNumbers

    def dims(path, p):
        names = [getattr(k, "key", None) for k in path]
        if not str(names[0]).startswith("blocks_") or names[-1] != "kernel":
            return None
        if p.ndim == 2:
            return MuonDimensionNumbers(reduction_axis=0, output_axis=1)
        if names[-2] == "proj":  # (N, H, D): the heads in, the width out
            return MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
        return MuonDimensionNumbers(reduction_axis=0, output_axis=(1, 2))  # (D, N, H)

    return jax.tree_util.tree_map_with_path(dims, params)


def make_optimizer(
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    total_steps: int,
    weight_decay: float,
    beta1: float,
    beta2: float,
    grad_clip: float,
    optimizer: str = "adamw",
    muon_lr: float = 0.02,
    muon_momentum: float = 0.95,
    schedule: str = "cosine",
    cooldown: float = 1.0,
    kernels: str = "plain",
) -> tuple[optax.GradientTransformation, Callable[[jax.Array], jax.Array]]:
    """Clipping + AdamW (or Muon, see the module docstring) with masked decay and the schedule.

    Under Muon the schedule's shape also drives Muon's rate: step s gets
    ``muon_lr * rate(s) / lr``.

    ``kernels="fast"`` clips with `gptjax.model.kernels.clip_by_global_norm` (the same update, one
    multiply instead of a division per element) and runs Muon as `gptjax.model.muon_kernel.muon`
    (the same update, faster on a CPU); ``"plain"`` uses optax's.

    Returns:
      (tx, rate): the optax transformation and the (AdamW) learning rate as a function of the
      step.
    """

    def rate(step):
        return learning_rate(
            step, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, total_steps=total_steps,
            schedule=schedule, cooldown=cooldown,
        )  # fmt: skip

    clip = model_kernels.clip_by_global_norm if kernels == "fast" else optax.clip_by_global_norm
    parts = [clip(grad_clip)] if grad_clip > 0 else []
    if optimizer == "muon":
        muon_rate = lambda step: rate(step) * (muon_lr / lr)  # noqa: E731
        if kernels == "fast":
            muon = muon_kernel.muon(
                muon_rate, beta=muon_momentum, weight_decay=weight_decay,
                adam_learning_rate=rate, adam_b1=beta1, adam_b2=beta2, dimensions=muon_dimensions,
            )  # fmt: skip
        else:
            muon = optax.contrib.muon(
                muon_rate, beta=muon_momentum, weight_decay=weight_decay,
                adam_learning_rate=rate, adam_b1=beta1, adam_b2=beta2,
                muon_weight_dimension_numbers=muon_dimensions,
            )  # fmt: skip
        parts.append(muon)
    else:
        parts.append(
            optax.adamw(rate, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask)
        )
    return optax.chain(*parts), rate


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    *,
    seed: int,
    block_size: int,
    grad_accum: int = 1,
) -> TrainState:
    """Initialises parameters and optimizer state (call it under `jax.jit` or `jax.eval_shape`).

    Args:
      model: the GPT (or any module mapping tokens_BT to logits_BTV with a ``deterministic`` flag).
      tx: the optimizer from `make_optimizer`.
      seed: the run's seed; parameters and dropout keys both derive from it.
      block_size: T of the dummy input used to trace the model.
      grad_accum: micro-batches per step.
    """
    params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = model.init(params_key, jnp.zeros((1, block_size), jnp.int32), deterministic=True)
    params = nn.unbox(variables["params"])
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=dropout_key,
        apply_fn=model.apply,
        tx=tx,
        grad_accum=grad_accum,
    )


def token_losses(apply_fn, params, inputs_BT, targets_BT, dropout_key=None) -> jax.Array:
    """Cross-entropy of each target token in nats, float32: losses_BT."""
    if dropout_key is None:
        logits_BTV = apply_fn({"params": params}, inputs_BT, deterministic=True)
    else:
        logits_BTV = apply_fn(
            {"params": params}, inputs_BT, deterministic=False, rngs={"dropout": dropout_key}
        )
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_BTV.astype(jnp.float32), targets_BT
    )


def _loss(params, apply_fn, batch, dropout_key):
    return token_losses(apply_fn, params, batch["inputs"], batch["targets"], dropout_key).mean()


def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One optimisation step.

    Args:
      state: the train state.
      batch: ``{"inputs": x_BT, "targets": y_BT}`` int32, B divisible by ``state.grad_accum``.

    Returns:
      (new state, metrics): ``loss`` (mean over the batch, before the update) and ``grad_norm``
      (global norm before clipping). The rate used by this update is ``schedule(state.step)``.
    """
    step_key = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(_loss)
    accum = state.grad_accum
    if accum == 1:
        loss, grads = grad_fn(state.params, state.apply_fn, batch, step_key)
    else:
        micro = jax.tree.map(lambda a: a.reshape(accum, a.shape[0] // accum, *a.shape[1:]), batch)

        def add_micro(carry, inputs):
            loss_sum, grad_sum = carry
            index, micro_batch = inputs
            key = jax.random.fold_in(step_key, index)
            loss, grads = grad_fn(state.params, state.apply_fn, micro_batch, key)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
        (loss, grads), _ = jax.lax.scan(add_micro, zeros, (jnp.arange(accum), micro))
        # Micro-batches hold equally many tokens, so the mean of their means is the batch mean.
        loss, grads = loss / accum, jax.tree.map(lambda g: g / accum, grads)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


def train_steps(state: TrainState, batches: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """Several steps in one call (`lax.scan`): less host overhead for small models.

    Args:
      state: the train state.
      batches: ``{"inputs": x_KBT, "targets": y_KBT}``, one batch per step.

    Returns:
      (new state, metrics with a leading K axis).
    """
    return jax.lax.scan(train_step, state, batches)
