"""Prediction heads: ``head_factory(head_type, output_mode, net, has_conf)``."""
from monst3r.heads.dpt_head import PixelwiseTaskWithDPT, create_dpt_head
from monst3r.heads.linear_head import LinearPts3d


def head_factory(head_type: str, output_mode: str, net, has_conf: bool = False):
    """('linear', 'pts3d') -> LinearPts3d; ('dpt', 'pts3d') -> DPT head; anything else: NotImplementedError."""
    if head_type == "linear" and output_mode == "pts3d":
        return LinearPts3d(net, has_conf)
    if head_type == "dpt" and output_mode == "pts3d":
        return create_dpt_head(net, has_conf=has_conf)
    raise NotImplementedError(f"unexpected head_type={head_type!r} output_mode={output_mode!r}")


__all__ = ["head_factory", "LinearPts3d", "PixelwiseTaskWithDPT", "create_dpt_head"]
