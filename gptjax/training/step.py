"""The optimisation step: loss, optimizer, train state and `train_step` (tutorial part 9).

Everything here is a pure function of its inputs; the loop (`gptjax.training.loop`) jits
`train_steps` once, with the state donated so parameters and optimizer moments are updated in
place.

* Loss: mean cross-entropy of the next token, in float32 whatever the compute dtype.
* Optimizer: global-norm clipping, then AdamW. Weight decay applies to
  parameters with two or more dimensions (dense kernels, embedding tables) and never to biases or
  norm scales, even the per-head attention biases of shape (N, H): decaying a bias or a scale
  towards zero does not regularise anything, it only fights the normalisation.
* Learning rate: linear warm-up to ``lr`` over ``warmup_steps`` (step s gets
  ``lr * (s + 1) / (warmup_steps + 1)``, so the first step already learns), then a cosine decay
  to ``min_lr`` at the last step, as nanoGPT does.
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

from gptjax.model import kernels as model_kernels


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


def learning_rate(
    step: jax.Array, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> jax.Array:
    """Linear warm-up then cosine decay from ``lr`` to ``min_lr`` at ``total_steps``."""
    step = jnp.asarray(step, jnp.float32)
    warm = lr * (step + 1.0) / (warmup_steps + 1.0)
    ratio = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    cosine = min_lr + 0.5 * (1.0 + jnp.cos(math.pi * ratio)) * (lr - min_lr)
    return jnp.where(step < warmup_steps, warm, cosine)


def decay_mask(params: Any) -> Any:
    """True for the parameters that get weight decay: weight matrices and embedding tables.

    The rule is "two or more dimensions, and not a bias or a norm scale": the attention's
    per-head biases have shape (N, H), two dimensions, yet they are biases.
    """

    def decayed(path, p):
        name = getattr(path[-1], "key", None)
        return p.ndim >= 2 and name not in ("bias", "scale")

    return jax.tree_util.tree_map_with_path(decayed, params)


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
    kernels: str = "plain",
) -> tuple[optax.GradientTransformation, Callable[[jax.Array], jax.Array]]:
    """Clipping + AdamW with masked decay and the warm-up/cosine schedule.

    ``kernels="fast"`` clips with `gptjax.model.kernels.clip_by_global_norm` (the same update, one
    multiply instead of a division per element); ``"plain"`` with optax's.

    Returns:
      (tx, schedule): the optax transformation and the learning rate as a function of the step.
    """

    def schedule(step):
        return learning_rate(
            step, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, total_steps=total_steps
        )

    clip = model_kernels.clip_by_global_norm if kernels == "fast" else optax.clip_by_global_norm
    parts = [clip(grad_clip)] if grad_clip > 0 else []
    parts.append(
        optax.adamw(schedule, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask)
    )
    return optax.chain(*parts), schedule


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
