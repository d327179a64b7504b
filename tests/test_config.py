import math

import pytest

from kitchenlab.config import MLPConfig, TrainConfig


def test_defaults_and_tiny_are_valid():
    assert MLPConfig.default().width == 32
    assert TrainConfig.tiny().epochs < TrainConfig.default().epochs


@pytest.mark.parametrize("lr", [0.0, -1e-3, math.inf, math.nan])
def test_learning_rate_must_be_positive_and_finite(lr):
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=lr)


def test_learning_rate_type():
    with pytest.raises(TypeError, match="learning_rate"):
        TrainConfig(learning_rate="fast")


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match=r"optimizer must be one of .*'rmsprop'"):
        TrainConfig(optimizer="rmsprop")


@pytest.mark.parametrize("field,value,err", [
    ("epochs", 0, ValueError), ("epochs", -3, ValueError), ("epochs", 2.5, TypeError),
    ("batch_size", 0, ValueError), ("batch_size", -1, ValueError),
    ("patience", 0, ValueError), ("weight_decay", -1e-4, ValueError), ("l2", -1.0, ValueError),
    ("dropout", 1.0, ValueError), ("dropout", -0.1, ValueError), ("clip_norm", 0.0, ValueError),
    ("schedule", "linear", ValueError), ("momentum", 1.0, ValueError),
])
def test_train_config_rejects_bad_values_naming_the_field(field, value, err):
    with pytest.raises(err, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("dropout", 1.0), ("dropout", -0.5), ("width", 0),
                                         ("depth", -1), ("n_classes", 1)])
def test_mlp_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        MLPConfig(**{field: value})


def test_replace_revalidates():
    cfg = TrainConfig()
    assert cfg.replace(learning_rate=0.1).learning_rate == 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        cfg.replace(learning_rate=-0.1)


def test_configs_are_frozen_and_hashable():
    import dataclasses

    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    assert hash(cfg) == hash(TrainConfig())


@pytest.mark.parametrize("field,value", [
    ("learning_rate", "0.1"), ("clip_norm", True), ("momentum", False), ("weight_decay", "0"),
    ("l2", True), ("dropout", "0.5"), ("epochs", True), ("epochs", "3"), ("batch_size", 8.0),
    ("patience", True), ("seed", "1"),
])
def test_train_config_refuses_strings_and_bools_for_numbers(field, value):
    with pytest.raises(TypeError, match=rf"{field} must be an? (number|int), got (str|bool|float)"):
        TrainConfig(**{field: value})


def test_train_config_stores_the_validated_values():
    import numpy as np

    cfg = TrainConfig(learning_rate=np.float32(0.5), clip_norm=2, epochs=np.int64(4),
                      weight_decay=0, dropout=np.float64(0.25))
    assert type(cfg.learning_rate) is float and cfg.learning_rate == 0.5
    assert type(cfg.clip_norm) is float and cfg.clip_norm == 2.0
    assert type(cfg.epochs) is int and cfg.epochs == 4
    assert type(cfg.weight_decay) is float and type(cfg.dropout) is float
    assert hash(cfg) == hash(TrainConfig(learning_rate=0.5, clip_norm=2.0, epochs=4,
                                         dropout=0.25))
    assert type(MLPConfig(width=np.int32(4)).width) is int
