"""The DPT adapter's CPU fast paths (oneDNN fused convs with packed weights, out_conv before the upsampling,
per-item head tail) against a literal re-statement of spec model.md 4.2 built from the same modules."""
import copy

import pytest
import torch
import torch.nn.functional as F

from croco.models import dpt_block
from croco.models.dpt_block import DPTOutputAdapter


def _reference(dpt: DPTOutputAdapter, tokens, image_size):
    """Spec 4.2 step by step: plain module calls, upsample THEN out_conv, whole batch at once, NCHW."""
    H, W = image_size
    nh, nw = H // dpt.patch_size, W // dpt.patch_size
    xs = [tokens[h].transpose(1, 2).reshape(tokens[h].shape[0], -1, nh, nw).contiguous() for h in dpt.hooks]
    xs = [post(x) for post, x in zip(dpt.act_postprocess, xs)]
    ys = [conv(x) for conv, x in zip(dpt.scratch.layer_rn, xs)]

    def rcu(u, x):
        return x + u.conv2(F.relu(u.conv1(F.relu(x))))

    def fuse(r, a, b=None):
        if b is not None:
            a = a + rcu(r.resConfUnit1, b)
        a = rcu(r.resConfUnit2, a)
        return r.out_conv(F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=True))

    s = dpt.scratch
    p4 = fuse(s.refinenet4, ys[3])[:, :, : ys[2].shape[2], : ys[2].shape[3]]
    p1 = fuse(s.refinenet1, fuse(s.refinenet2, fuse(s.refinenet3, p4, ys[2]), ys[1]), ys[0])
    return dpt.head(p1)


def _small_dpt(seed=0):
    torch.manual_seed(seed)
    dpt = DPTOutputAdapter(dim_tokens=[24, 16, 16, 16], hooks=[0, 1, 2, 3], num_channels=4, patch_size=16,
                           layer_dims=(8, 16, 24, 32), feature_dim=16, last_dim=8).eval()
    with torch.no_grad():  # non-trivial biases everywhere
        for p in dpt.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return dpt


def _tokens(B, H, W, seed=1):
    g = torch.Generator().manual_seed(seed)
    N = (H // 16) * (W // 16)
    return [torch.randn(B, N, c, generator=g) for c in (24, 16, 16, 16)]


@pytest.mark.parametrize("B,H,W", [(3, 80, 160), (1, 160, 80), (2, 64, 64), (2, 16, 48), (1, 32, 16)])
def test_dpt_fast_path_matches_spec(B, H, W):
    dpt = _small_dpt()
    toks = _tokens(B, H, W)
    ref = _reference(dpt, toks, (H, W))
    with torch.no_grad():
        fast = dpt(toks, (H, W))
    assert fast.shape == (B, 4, H, W)
    torch.testing.assert_close(fast, ref.detach(), rtol=1e-5, atol=1e-5)
    if dpt_block.HAS_FUSED_CONV and torch.backends.mkldnn.is_available():
        assert dpt.head[2].__dict__.get("_packed_weights")  # the fused oneDNN path really ran
    slow = dpt(toks, (H, W))  # autograd enabled: plain module path
    torch.testing.assert_close(slow.detach(), ref.detach(), rtol=1e-5, atol=1e-5)


def test_dpt_gradients_through_the_plain_path():
    dpt = _small_dpt()
    toks = [t.requires_grad_() for t in _tokens(2, 80, 160)]
    dpt(toks, (80, 160)).square().mean().backward()
    unused = "scratch.refinenet4.resConfUnit1."  # R4 has no second input (as in the original)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in dpt.named_parameters() if not n.startswith(unused))
    ref_dpt = copy.deepcopy(dpt)
    ref_dpt.zero_grad()
    toks2 = [t.detach().clone().requires_grad_() for t in toks]
    _reference(ref_dpt, toks2, (80, 160)).square().mean().backward()
    for (n, p), q in zip(dpt.named_parameters(), ref_dpt.parameters()):
        if not n.startswith(unused):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_packed_weights_follow_weight_updates_and_deepcopy():
    dpt = _small_dpt()
    toks = _tokens(2, 80, 160)
    with torch.no_grad():
        before = dpt(toks, (80, 160))
        dpt.load_state_dict(_small_dpt(seed=5).state_dict())  # in-place copy into the same parameters
        after = dpt(toks, (80, 160))
        torch.testing.assert_close(after, _reference(dpt, toks, (80, 160)), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(before, after)
        twin = copy.deepcopy(dpt)  # opaque packed weights are not copied; the copy packs its own
        assert not twin.head[2].__dict__.get("_packed_weights")
        twin.head[4].bias.add_(1.0)
        torch.testing.assert_close(twin(toks, (80, 160)), after + 1.0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dpt(toks, (80, 160)), after, rtol=0, atol=0)


def test_packed_weight_cache_is_bounded():
    dpt = _small_dpt()
    with torch.no_grad():
        for B, H, W in [(2, 80, 160), (1, 160, 80), (3, 64, 64), (2, 80, 160)]:
            toks = _tokens(B, H, W)
            torch.testing.assert_close(dpt(toks, (H, W)), _reference(dpt, toks, (H, W)), rtol=1e-5, atol=1e-5)
    if dpt_block.HAS_FUSED_CONV and torch.backends.mkldnn.is_available():
        cache = dpt.scratch.refinenet1.resConfUnit2.conv1.__dict__["_packed_weights"]
        assert 1 <= len([k for k in cache if k != "ident"]) <= 2
