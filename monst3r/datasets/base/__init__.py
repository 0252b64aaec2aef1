"""Building blocks of the training datasets: combinators, the batched sampler, the view-dataset base class,
cropping and the image transforms."""
from monst3r.datasets.base.base_stereo_view_dataset import (BaseStereoViewDataset, missing_dataset_error,
                                                            parse_resolutions, transpose_to_landscape)
from monst3r.datasets.base.batched_sampler import BatchedRandomSampler
from monst3r.datasets.base.easy_dataset import CatDataset, EasyDataset, MulDataset, ResizedDataset
from monst3r.datasets.base.transforms import ColorJitter, ImgNorm, TRANSFORMS, resolve_transform

__all__ = ["BaseStereoViewDataset", "BatchedRandomSampler", "CatDataset", "ColorJitter", "EasyDataset", "ImgNorm",
           "MulDataset", "ResizedDataset", "TRANSFORMS", "missing_dataset_error", "parse_resolutions",
           "resolve_transform", "transpose_to_landscape"]
