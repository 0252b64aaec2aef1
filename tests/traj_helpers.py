"""Trajectory helpers shared by the optimizer tests (evo's convention: Sim(3) Umeyama on camera centres)."""
import numpy as np


def umeyama(src, dst):
    """Similarity ``(s, R, t)`` with ``dst ~ s R src + t`` for ``[N, 3]`` point sets (s = 1 for a single point)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, D, Vt = np.linalg.svd(xd.T @ xs / len(src))
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var = (xs ** 2).sum() / len(src)
    s = np.trace(np.diag(D) @ S) / var if var > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def ate(pred, gt):
    """ATE (RMSE of camera centres) of ``[N, 4, 4]`` c2w poses after Sim(3) Umeyama alignment."""
    src, dst = np.asarray(pred, np.float64)[:, :3, 3], np.asarray(gt, np.float64)[:, :3, 3]
    s, R, t = umeyama(src, dst)
    al = (s * (R @ src.T)).T + t
    return float(np.sqrt(((al - dst) ** 2).sum(1).mean()))
