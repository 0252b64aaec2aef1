"""The runtime / training-package / checkpoint-loading layout (architecture issue #15): one process-group timeout,
the flags shared by the training and evaluation parsers declared once, ``load_model(verbose=...)`` controlling its
log line, the official model string written once, and the public names kept where outside code imports them."""
import logging

import pytest

from monst3r import runtime


def test_one_process_group_timeout():
    import datetime

    assert runtime.PROCESS_GROUP_TIMEOUT == datetime.timedelta(hours=2)


def test_split_for_rank_covers_every_item_once():
    items = list(range(11))
    parts = [runtime.split_for_rank(items, r, 4) for r in range(4)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert runtime.rank_world() == (0, 1) and runtime.is_main_process()
    assert runtime.all_gather({"a": 1}) == [{"a": 1}] and runtime.all_reduce_mean(2.5) == 2.5


def test_epoch_seed_is_deterministic_and_distinct():
    assert runtime.epoch_seed(0, 0, 3) == runtime.epoch_seed(0, 0, 3)
    assert len({runtime.epoch_seed(0, r, e) for r in range(3) for e in range(3)}) == 9


def test_shared_flags_are_declared_once_with_each_parsers_defaults():
    import argparse

    from monst3r.eval.args import add_shared_arguments, build_eval_parser
    from monst3r.model_loading import OFFICIAL_MODEL_STRING, ORIGINAL_TRAIN_MODEL_STRING
    from monst3r.training import get_args_parser

    train = vars(get_args_parser().parse_args([]))
    ev = vars(build_eval_parser().parse_args([]))
    shared = argparse.ArgumentParser()
    add_shared_arguments(shared, model_default="", training=False)
    names = list(vars(shared.parse_args([])))
    assert len(names) == 30
    for name in names:
        if name == "model":
            assert train[name] == ORIGINAL_TRAIN_MODEL_STRING and ev[name] == OFFICIAL_MODEL_STRING
        else:
            assert train[name] == ev[name], name
    assert " ".join(ORIGINAL_TRAIN_MODEL_STRING.split()) == OFFICIAL_MODEL_STRING
    with pytest.raises(SystemExit):  # training refuses an unknown --mode; evaluation refuses an unknown flow loss
        get_args_parser().parse_args(["--mode", "nonsense"])
    with pytest.raises(SystemExit):
        build_eval_parser().parse_args(["--flow_loss_fn", "l1"])


def test_load_model_verbose_controls_its_log_line(golden, caplog):
    from monst3r.model import load_model

    ckpt = golden("model", "tiny_linear", "tiny_linear.pth")
    with caplog.at_level(logging.INFO, logger="monst3r.model_loading"):
        load_model(ckpt, "cpu", verbose=False)
    assert not [r for r in caplog.records if "instantiating" in r.getMessage()]
    with caplog.at_level(logging.INFO, logger="monst3r.model_loading"):
        load_model(ckpt, "cpu")
    assert [r for r in caplog.records if "instantiating" in r.getMessage()]


def test_public_names_stay_importable():
    import monst3r.model as model
    import monst3r.training as training
    from monst3r.model_loading import CheckpointError, DEFAULT_HUB_MODEL

    assert model.CheckpointError is CheckpointError and model.DEFAULT_HUB_MODEL == DEFAULT_HUB_MODEL
    for name in ("AsymmetricCroCo3DStereo", "load_model", "model_from_string", "build_model",
                 "normalize_for_inference", "check_state_dict", "OFFICIAL_MODEL_STRING"):
        assert hasattr(model, name), name
    assert hasattr(model.AsymmetricCroCo3DStereo, "from_pretrained")
    for name in training.__all__:
        assert hasattr(training, name), name
