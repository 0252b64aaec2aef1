"""Training of MonST3R / DUSt3R networks (spec training.md), as a package:

* :mod:`.args` — ``launch.py``'s parser (:func:`get_args_parser`) and :func:`check_launch_args`;
* :mod:`.checkpoints` — read / save / resume / ``--pretrained`` / final model;
* :mod:`.meters` — :class:`SmoothedValue`, :class:`MetricLogger`;
* :mod:`.loop` — :func:`forward_batch`, :func:`train_one_epoch`, :func:`test_one_epoch`, :func:`train`;
* processes, devices and seeds live in :mod:`monst3r.runtime` (re-exported here under their old names).

Evaluation imports :mod:`.args` and :mod:`.checkpoints` (never :mod:`.loop`); the loop calls the pose evaluation.
"""
from monst3r.runtime import (all_reduce_mean, barrier, epoch_seed, get_rank, get_world_size, init_distributed_mode,
                             is_main_process, seed_everything)
from monst3r.runtime import resolve_rank_device as resolve_device
from monst3r.training.args import (DEFAULT_MODEL, DEFAULT_TRAIN_CRITERION, EVAL_DATASETS, MODES, check_launch_args,
                                   get_args_parser)
from monst3r.training.checkpoints import (load_pretrained, load_training_state, read_checkpoint, save_checkpoint,
                                          save_final_model)
from monst3r.training.loop import (forward_batch, save_visuals, symmetrize_batch, test_one_epoch, train,
                                   train_one_epoch, write_log_stats)
from monst3r.training.meters import MetricLogger, SmoothedValue

__all__ = ["DEFAULT_MODEL", "DEFAULT_TRAIN_CRITERION", "EVAL_DATASETS", "MODES", "MetricLogger", "SmoothedValue",
           "all_reduce_mean", "barrier", "check_launch_args", "epoch_seed", "forward_batch", "get_args_parser",
           "get_rank", "get_world_size", "init_distributed_mode", "is_main_process", "load_pretrained",
           "load_training_state", "read_checkpoint", "resolve_device", "save_checkpoint", "save_final_model",
           "save_visuals", "seed_everything", "symmetrize_batch", "test_one_epoch", "train", "train_one_epoch",
           "write_log_stats"]
