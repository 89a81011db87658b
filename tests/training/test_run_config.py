"""Tests of gptjax.training.run_config: every mistake is one `UserError` that names the key."""

import math

import ml_collections
import pytest
from tiny_runs import tiny_config

from gptjax.errors import UserError
from gptjax.training.run_config import check_config, check_resume_config


def _config(**overrides) -> ml_collections.ConfigDict:
    """The tiny config with ``overrides`` set as given, whatever their type."""
    config = ml_collections.ConfigDict(tiny_config().to_dict(), type_safe=False)
    for key, value in overrides.items():
        group, name = key.split(".")
        config[group][name] = value
    return config


@pytest.mark.parametrize(
    "overrides, message",
    [
        # Not finite at all: "must be finite", not an interval that seems to allow infinity.
        ({"opt.lr": math.inf}, r"config\.opt\.lr=inf must be finite: give a number > 0\.$"),
        ({"opt.lr": math.nan}, r"config\.opt\.lr=nan must be finite"),
        ({"opt.beta2": math.nan}, r"config\.opt\.beta2=nan must be finite: .* in \[0, 1\)"),
        ({"model.dropout": math.nan}, r"config\.model\.dropout=nan must be finite"),
        ({"model.mlp_ratio": math.inf}, r"config\.model\.mlp_ratio=inf must be finite"),
        ({"model.mlp_ratio": 10**400}, r"config\.model\.mlp_ratio=1000.* must be finite"),
        # Finite in Python, infinite where training computes it.
        ({"opt.lr": 1e39}, r"config\.opt\.lr=1e\+39 is infinite in float32, .* 3\.403e\+38"),
        ({"opt.weight_decay": 1e39}, r"config\.opt\.weight_decay=1e\+39 is infinite in float32"),
        ({"opt.grad_clip": 1e39}, r"config\.opt\.grad_clip=1e\+39 is infinite in float32"),
        ({"model.dtype": "float16", "opt.lr": 1e5}, r"opt\.lr=100000\.0 is infinite in float16"),
        ({"model.dtype": "bfloat16", "opt.lr": 3.4e38}, r"opt\.lr=3\.4e\+38 is infinite in bf"),
        # Out of range.
        ({"opt.lr": -1.0}, r"config\.opt\.lr=-1\.0 must be a number > 0\.$"),
        ({"model.mlp_ratio": -1.0}, r"config\.model\.mlp_ratio=-1\.0 must be a number >= 0\.$"),
        ({"opt.min_lr": 1.0}, r"config\.opt\.min_lr=1\.0 must be a number in \[0, 0\.002\]"),
        ({"opt.lr": "fast"}, r"config\.opt\.lr='fast' must be a number > 0"),
    ],
)
def test_float_settings_must_be_finite_in_the_dtypes_training_computes_them_in(overrides, message):
    with pytest.raises(UserError, match=message):
        check_config(_config(**overrides))


def test_the_largest_finite_settings_pass():
    check_config(_config(**{"opt.lr": 3.4e38}))  # float32's largest is 3.4028e38


def test_blocks_without_an_mlp_and_a_model_without_blocks_pass():
    assert check_config(_config(**{"model.mlp_ratio": 0})).mlp_ratio == 0
    assert check_config(_config(**{"model.n_layer": 0})).n_layer == 0
    check_config(_config(**{"model.dtype": "float16", "opt.lr": 6e4}))  # float16's is 65504
    check_config(_config(**{"model.dtype": "bfloat16", "opt.lr": 3.3e38}))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.n_head": 3}, "not divisible by n_head=3"),  # raised by GPTConfig
        ({"mesh.data": 3}, r"config\.mesh="),  # raised by the mesh
        ({"sample.top_p": 2.0}, "top_p must be in"),  # raised by the sampler's checks
        ({"train.batch_size": 0}, r"config\.train\.batch_size=0 must be an integer >= 1"),
        ({"opt.optimizer": "sgd"}, r"config\.opt\.optimizer='sgd': use one of 'adamw', 'muon'"),
        ({"opt.schedule": "linear"}, r"config\.opt\.schedule='linear': use one of 'cosine'"),
        ({"opt.cooldown": 1.5}, r"config\.opt\.cooldown=1\.5 must be a number in \[0, 1\]"),
        ({"opt.muon_momentum": 1.0}, r"config\.opt\.muon_momentum=1\.0 must be a number in"),
        ({"opt.muon_lr": 0.0}, r"config\.opt\.muon_lr=0\.0 must be a number > 0"),
        ({"eval.at_start": "no"}, r"config\.eval\.at_start='no' must be True or False"),
    ],
)
def test_mistakes_found_by_other_modules_are_user_errors_too(overrides, message):
    with pytest.raises(UserError, match=message):
        check_config(_config(**overrides))


def test_a_changed_key_that_cannot_change_on_resume_is_a_user_error():
    saved = tiny_config().to_dict()
    assert check_resume_config(saved, _config(**{"train.steps": 9})) == ["  train.steps: 4 -> 9"]
    with pytest.raises(UserError, match=r"opt\.lr: 0\.002 -> 0\.01\n.*cannot change on resume"):
        check_resume_config(saved, _config(**{"opt.lr": 0.01}))
