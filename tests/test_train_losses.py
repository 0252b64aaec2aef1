"""Training losses against the golden outputs of the original (spec training.md 9; golden/train/README.md):
values, details, intermediates, gradients; criterion-string parsing."""
import json
import math

import numpy as np
import pytest
import torch

from monst3r.training.criteria import L21, ConfLoss, L21Loss, MultiLoss, Regr3D, Regr3D_ScaleShiftInv
from monst3r.utils.parsing import SafeParseError, parse_criterion

CASES = ["basic", "even_valid_count", "empty_view2"]


@pytest.fixture(scope="module")
def golden_losses(golden):
    spec = json.loads(golden("train", "losses.json").read_text())
    arrays = np.load(golden("train", "losses_inputs_outputs.npz"))
    return spec, {k: arrays[k] for k in arrays.files}


def _batch(z, case, grad=False):
    t = lambda k: torch.from_numpy(z[f"{case}__{k}"].copy())  # noqa: E731
    gt1 = dict(camera_pose=t("gt1_camera_pose"), pts3d=t("gt1_pts3d"), valid_mask=t("gt1_valid_mask"))
    gt2 = dict(camera_pose=t("gt2_camera_pose"), pts3d=t("gt2_pts3d"), valid_mask=t("gt2_valid_mask"))
    pred1 = dict(pts3d=t("pred1_pts3d").requires_grad_(grad), conf=t("pred1_conf").requires_grad_(grad))
    pred2 = dict(pts3d_in_other_view=t("pred2_pts3d_in_other_view").requires_grad_(grad),
                 conf=t("pred2_conf").requires_grad_(grad))
    return gt1, gt2, pred1, pred2


def _close(a, b, rtol=1e-5):
    if isinstance(b, float) and math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= rtol * max(abs(b), 1e-6)


def _details_match(got, ref):
    assert list(got) == list(ref)
    for k in ref:
        assert _close(got[k], ref[k]), (k, got[k], ref[k])


@pytest.mark.parametrize("case", CASES)
@torch.enable_grad()  # another test module disables autograd globally at import
def test_train_and_test_criteria_match_golden(golden_losses, case):
    spec, z = golden_losses
    ref = spec["cases"][case]
    train_crit = parse_criterion(spec["train_criterion"])
    test_crit = parse_criterion(spec["test_criterion"])
    assert repr(train_crit) == ref["train_criterion_repr"]
    assert repr(test_crit) == ref["test_criterion_repr"]
    gt1, gt2, p1, p2 = _batch(z, case, grad=True)
    loss, details = train_crit(gt1, gt2, p1, p2)
    assert _close(float(loss.detach()), ref["train_loss"])
    _details_match(details, ref["train_details"])
    if f"{case}__grad_train_pred1_pts3d" in z:
        loss.backward()
        for name, tensor in (("pred1_pts3d", p1["pts3d"]), ("pred1_conf", p1["conf"]),
                             ("pred2_pts3d", p2["pts3d_in_other_view"]), ("pred2_conf", p2["conf"])):
            np.testing.assert_allclose(tensor.grad.numpy(), z[f"{case}__grad_train_{name}"], atol=1e-6, rtol=1e-4)
    gt1, gt2, p1, p2 = _batch(z, case)
    loss, details = test_crit(gt1, gt2, p1, p2)
    assert _close(float(loss), ref["test_loss"])
    _details_match(details, ref["test_details"])
    loss, details = Regr3D(L21, norm_mode="avg_dis")(gt1, gt2, p1, p2)
    assert _close(float(loss), ref["regr3d_mean_loss"])
    _details_match(details, ref["regr3d_mean_details"])
    n1, n2 = int(gt1["valid_mask"].sum()), int(gt2["valid_mask"].sum())
    assert [n1, n2] == ref["n_valid"]


@pytest.mark.parametrize("case", CASES)
def test_intermediates_match_golden(golden_losses, case):
    spec, z = golden_losses
    gt1, gt2, p1, p2 = _batch(z, case)
    train_crit = parse_criterion(spec["train_criterion"])
    g1, g2, q1, q2, m1, m2, _ = train_crit.pixel_loss.get_all_pts3d(gt1, gt2, p1, p2)
    for name, got in (("regr3d_gt_pts1_normalized", g1), ("regr3d_gt_pts2_normalized", g2),
                      ("regr3d_pred_pts1_normalized", q1), ("regr3d_pred_pts2_normalized", q2)):
        ref = z[f"{case}__{name}"]
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=name)
    ((l1, mk1), (l2, mk2)), _ = train_crit.pixel_loss(gt1, gt2, p1, p2)
    for got, name in ((l1, "regr3d_pixel_loss1"), (l2, "regr3d_pixel_loss2")):
        ref = z[f"{case}__{name}"]
        assert got.shape == ref.shape
        if ref.size:
            np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-7)
    test_crit = parse_criterion(spec["test_criterion"])
    s1, s2, r1, r2, _, _, _ = test_crit.get_all_pts3d(gt1, gt2, p1, p2)
    for name, got in (("ssi_gt_pts1", s1), ("ssi_gt_pts2", s2), ("ssi_pred_pts1", r1), ("ssi_pred_pts2", r2)):
        ref = z[f"{case}__{name}"]
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(ref)), err_msg=name)


def test_lower_median_matters(golden_losses):
    """The even-count case is only matched with the LOWER median (spec 9.5)."""
    spec, z = golden_losses
    gt1, gt2, p1, p2 = _batch(z, "even_valid_count")
    loss, _ = parse_criterion(spec["test_criterion"])(gt1, gt2, p1, p2)
    assert _close(float(loss), spec["cases"]["even_valid_count"]["test_loss"], rtol=1e-6)


def test_network_outputs_not_modified_in_place(golden_losses):
    spec, z = golden_losses
    gt1, gt2, p1, p2 = _batch(z, "basic")
    before = p1["pts3d"].clone(), p2["pts3d_in_other_view"].clone()
    parse_criterion(spec["test_criterion"])(gt1, gt2, p1, p2)
    assert torch.equal(before[0], p1["pts3d"]) and torch.equal(before[1], p2["pts3d_in_other_view"])


def test_make_batch_symmetric_example(golden_losses):
    from monst3r.training import symmetrize_batch

    spec, _ = golden_losses
    ex = spec["make_batch_symmetric_example"]
    img1 = torch.arange(3, dtype=torch.float32)[:, None].repeat(1, 4)
    img2 = img1 + 10
    v1 = dict(img=img1, instance=["a0", "a1", "a2"])
    v2 = dict(img=img2, instance=["b0", "b1", "b2"])
    s1, s2 = symmetrize_batch(v1, v2)
    assert s1["img"][:, 0].tolist() == ex["view1_img_col0"] and s2["img"][:, 0].tolist() == ex["view2_img_col0"]
    assert s1["instance"] == ex["view1_instance"] and s2["instance"] == ex["view2_instance"]


def test_l21_reductions():
    a, b = torch.zeros(4, 3), torch.ones(4, 3)
    assert torch.allclose(L21Loss()(a, b), torch.tensor(3.0).sqrt())
    assert L21Loss("sum")(a, b).item() == pytest.approx(4 * 3 ** 0.5)
    assert L21Loss("none")(a, b).shape == (4,)
    assert L21Loss()(a[:0], b[:0]).item() == 0.0
    assert repr(L21) == "L21Loss()"


def test_criterion_arithmetic_and_forms():
    crit = parse_criterion("0.5 * Regr3D(L21, norm_mode='avg_dis') + ConfLoss(Regr3D(L21), alpha=0.2)")
    assert isinstance(crit, MultiLoss)
    assert repr(crit) == "0.5*Regr3D(L21Loss()) + ConfLoss(Regr3D(L21Loss()))"
    plain = Regr3D(L21)
    assert plain._loss2 is None  # combining does not modify the operands
    _ = plain + ConfLoss(Regr3D(L21))
    assert plain._loss2 is None
    assert isinstance(parse_criterion("Regr3D_ScaleShiftInv(L21, gt_scale=True)"), Regr3D_ScaleShiftInv)
    assert isinstance(parse_criterion("ConfLoss(Regr3D(L21Loss(), norm_mode='avg_dis'), alpha=0.2)"), ConfLoss)
    rng = np.random.default_rng(0)
    B, H, W = 2, 4, 5
    pose = torch.eye(4).repeat(B, 1, 1)
    pts = torch.from_numpy(rng.normal(size=(B, H, W, 3)).astype(np.float32))
    gt = dict(camera_pose=pose, pts3d=pts, valid_mask=torch.ones(B, H, W, dtype=torch.bool))
    pred1 = dict(pts3d=pts * 2, conf=torch.full((B, H, W), 2.0))
    pred2 = dict(pts3d_in_other_view=pts * 2, conf=torch.full((B, H, W), 2.0))
    loss, details = crit(gt, gt, pred1, pred2)
    assert set(details) == {"Regr3D_pts3d_1", "Regr3D_pts3d_2", "conf_loss_1", "conf_loss2"}
    assert float(loss) == pytest.approx(0.5 * 0 + 2 * (0 - 0.2 * math.log(2.0)), abs=1e-5)


@pytest.mark.parametrize("bad, part", [
    ("ConfLoss(Regr3D(L22, norm_mode='avg_dis'), alpha=0.2)", "L22"),
    ("Foo(L21)", "Foo"),
    ("ConfLoss(Regr3D(L21), alpha=__import__('os'))", "__import__"),
    ("Regr3D(L21, bogus=1)", "bogus"),
    ("ConfLoss(Regr3D(L21), alpha=-1)", "alpha"),
    ("Regr3D(L21).criterion", "criterion"),
    ("ConfLoss(Regr3D(L21)", "parse"),
    ("L21", "not a loss"),
    ("Regr3D(L21, norm_mode=os.path)", "os.path"),
])
def test_bad_criterion_strings(bad, part):
    with pytest.raises(SafeParseError, match=None) as exc:
        parse_criterion(bad)
    assert part in str(exc.value)
