"""Training datasets (spec training.md 6-7): the TartanAir pipeline against the original's golden outputs, every
loader on a tiny fixture written in its on-disk layout (built from the synthetic generator), expression parsing,
combinators, samplers and errors."""
import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from monst3r.datasets.base import (BatchedRandomSampler, CatDataset, ColorJitter, EasyDataset, ImgNorm, MulDataset,
                                   ResizedDataset)
from monst3r.datasets.base.video_clips import get_stride_distribution
from monst3r.datasets.loader import (build_test_loaders, get_data_loader, parse_dataset_expression,
                                     split_top_level_terms)
from monst3r.errors import Monst3rInputError
from monst3r.utils.parsing import SafeParseError
from monst3r.datasets.camera_geometry import rigid_inverse_np

VIEW_KEYS = {"img", "depthmap", "camera_pose", "camera_intrinsics", "dataset", "label", "instance", "idx",
             "true_shape", "z_far", "pts3d", "valid_mask", "rng"}


# ============================================================================================== golden TartanAir
@pytest.fixture(scope="module")
def tartanair_root(tmp_path_factory, golden):
    src = np.load(golden("train", "dataset_tartanair_source.npz"))
    root = tmp_path_factory.mktemp("tartanair")
    for seq, lo, hi in (("P000", 0, 12), ("P001", 12, 22)):
        d = root / "envA" / "Hard" / seq
        (d / "image_left").mkdir(parents=True)
        (d / "depth_left").mkdir()
        for k, i in enumerate(range(lo, hi)):
            PIL.Image.fromarray(src["images_rgb"][i]).save(d / "image_left" / f"{k:06d}_left.png")
            np.save(d / "depth_left" / f"{k:06d}_left_depth.npy", src["depths"][i])
        np.savetxt(d / "pose_left.txt", src[f"poses_{seq}"])
    return str(root)


@pytest.fixture(scope="module")
def golden_datasets(golden):
    spec = json.loads(golden("train", "datasets.json").read_text())
    items = np.load(golden("train", "dataset_items.npz"))
    return spec, {k: items[k] for k in items.files}


def _legacy(expr):
    return expr.replace("TarTanAirDUSt3R(", "TarTanAirDUSt3R(legacy_rng=True, ")


def test_stride_distributions(golden_datasets):
    spec, _ = golden_datasets
    for name, ref in spec["stride_distributions"].items():
        np.testing.assert_allclose(get_stride_distribution(list(range(1, 10)), name), ref, rtol=1e-12)
    with pytest.raises(ValueError):
        get_stride_distribution([1, 2], "gaussian")


def test_tartanair_train_pipeline_matches_golden(golden_datasets, tartanair_root):
    spec, _ = golden_datasets
    ref = spec["train"]
    expr = spec["train_expression"].replace("{ROOT}", tartanair_root)
    np.random.seed(0)
    torch.manual_seed(0)
    loader = get_data_loader(_legacy(expr), batch_size=2, num_workers=0, shuffle=True, drop_last=True)
    ds = loader.dataset
    assert type(ds).__name__ == ref["type"] and len(ds) == ref["len"]
    assert repr(ds).replace(tartanair_root, "{ROOT}") == ref["repr"]
    assert ds._cum_sizes.tolist() == ref["cum_sizes"]
    assert [list(r) for r in ds._resolutions] == ref["resolutions"]
    assert len(loader) == ref["loader_len"] and type(loader.sampler).__name__ == ref["sampler_type"]
    assert len(loader.sampler) == ref["sampler_len"]
    for comp, cref in zip(ds.datasets, ref["components"]):
        assert type(comp).__name__ == cref["type"] and len(comp) == cref["len"]
        inner = comp.dataset
        assert len(inner) == cref["inner_len"] and inner.strides == cref["strides"]
        assert {str(k): v for k, v in inner.stride_counts.items()} == cref["stride_counts"]
        clips = [{"rgb": [p.replace(tartanair_root, "{ROOT}") for p in inner.clip_paths(i)],
                  "stride": inner.clips[i].stride} for i in range(len(inner))]
        assert clips == cref["clips"]
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        assert [c._idxs_mapping.tolist() for c in ds.datasets] == ref[f"idxs_mapping_epoch{epoch}"]
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)
        assert [list(x) for x in loader.sampler] == ref[f"sampler_epoch{epoch}"]


def test_default_rng_resampling_keeps_counts(golden_datasets, tartanair_root):
    """Without legacy_rng, clips are drawn by a dedicated generator: same counts, identical on every rank."""
    spec, _ = golden_datasets
    expr = spec["train_expression"].replace("{ROOT}", tartanair_root)
    np.random.seed(1)
    a = parse_dataset_expression(expr).datasets[0].dataset
    np.random.seed(2)
    b = parse_dataset_expression(expr).datasets[0].dataset
    counts = {}
    for c in a.clips:
        counts[c.stride] = counts.get(c.stride, 0) + 1
    assert counts == {1: 3, 2: 5, 3: 7}
    assert [c.frames for c in a.clips] == [c.frames for c in b.clips]


def _compare_view(view, z, prefix, with_img=True):
    for k in ("depthmap", "valid_mask", "true_shape"):
        np.testing.assert_array_equal(np.asarray(view[k]), z[f"{prefix}__{k}"], err_msg=k)
    for k in ("camera_pose", "camera_intrinsics"):
        np.testing.assert_allclose(view[k], z[f"{prefix}__{k}"], atol=1e-5, rtol=0, err_msg=k)
    ref = z[f"{prefix}__pts3d"]
    np.testing.assert_allclose(view["pts3d"], ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    if with_img:
        np.testing.assert_array_equal(view["img"].numpy(), z[f"{prefix}__img"])


def test_tartanair_items_match_golden(golden_datasets, tartanair_root):
    spec, z = golden_datasets
    expr = spec["train_expression"].replace("{ROOT}", tartanair_root)
    np.random.seed(0)
    torch.manual_seed(0)
    ds = parse_dataset_expression(_legacy(expr))
    ds.set_epoch(0)
    for name in ("seeded_ar0", "seeded_ar1"):
        ref = spec["items"][name]
        views = ds[tuple(ref["index"])]
        for v, (view, vref) in enumerate(zip(views, ref["views"])):
            assert set(view) == VIEW_KEYS
            assert view["label"] == vref["label"] and view["instance"] == vref["instance"]
            assert view["dataset"] == vref["dataset"]["value"] and view["z_far"] == vref["z_far"]["value"]
            assert list(view["idx"]) == vref["idx"]["value"] and view["rng"] == vref["rng"]["value"]
            for k in ("img", "depthmap", "camera_pose", "camera_intrinsics", "true_shape", "pts3d", "valid_mask"):
                assert str(np.asarray(view[k]).dtype) == vref[k]["dtype"] and list(view[k].shape) == vref[k]["shape"]
            _compare_view(view, z, f"{name}__view{v}")
    # augmented item: aug_focal (global numpy Beta draw in legacy mode) and aug_crop (item rng)
    comp = ds.datasets[0].dataset
    np.random.seed(123)
    torch.manual_seed(123)
    comp._rng = np.random.default_rng(42)
    views = comp[(2, 1)]
    ref = spec["items"]["augmented_component0_idx2_ar1"]
    for v, (view, vref) in enumerate(zip(views, ref["views"])):
        assert view["instance"] == vref["instance"] and view["rng"] == vref["rng"]["value"]
        _compare_view(view, z, f"augmented__view{v}", with_img=False)


def test_tartanair_test_loader_matches_golden(golden_datasets, tartanair_root):
    spec, _ = golden_datasets
    ref = spec["test"]
    expr = ref["expression"].replace("{ROOT}", tartanair_root)
    loaders = build_test_loaders(expr, batch_size=2, num_workers=0)
    (name, loader), = loaders.items()
    assert name == ref["name_for_logging"]
    assert type(loader.sampler).__name__ == ref["sampler_type"] and len(loader) == ref["loader_len"]
    loader.dataset.set_epoch(0)
    assert loader.dataset._idxs_mapping.tolist() == ref["idxs_mapping_epoch0"]
    view1, view2 = next(iter(loader))
    for k, kref in ref["first_batch_keys"].items():
        if kref == "list":
            assert isinstance(view1[k], list), k
        else:
            assert str(view1[k].dtype) == kref[0] and list(view1[k].shape) == kref[1], k
    assert [t.tolist() for t in view1["idx"]] == ref["first_batch_idx"]
    assert view1["rng"].tolist() == ref["first_batch_rng"]


# ============================================================================================== fixtures
W, H, NF = 64, 48, 4


@pytest.fixture(scope="module")
def scene():
    from monst3r.datasets.synthetic import SceneConfig, SyntheticScene

    s = SyntheticScene(SceneConfig(width=W, height=H, num_frames=NF, seed=5, num_objects=0))
    s.frames()
    return s


def _rgb(scene, i):
    return PIL.Image.fromarray(scene.frame(i).rgb)


def write_pointodyssey(root, scene):
    d = root / "train" / "seq_a"
    (d / "rgbs").mkdir(parents=True)
    (d / "depths").mkdir()
    (d / "normals").mkdir()
    for i in range(NF):
        _rgb(scene, i).save(d / "rgbs" / f"rgb_{i:05d}.jpg", quality=95)
        q = np.round(scene.frame(i).depth / 1000.0 * 65535).astype(np.uint16)
        PIL.Image.fromarray(q).save(d / "depths" / f"depth_{i:05d}.png")
    np.savez(d / "info.npz", trajs_3d=np.array([NF, 100, 3]))
    w2c = np.stack([rigid_inverse_np(scene.frame(i).pose) for i in range(NF)])
    np.savez(d / "anno.npz", intrinsics=scene.intrinsics, extrinsics=w2c)
    # a sequence with too few tracked points is skipped
    shutil.copytree(d, root / "train" / "seq_b")
    np.savez(root / "train" / "seq_b" / "info.npz", trajs_3d=np.array([NF, 10, 3]))
    return dict(dataset_location=str(root))


def write_spring(root, scene):
    d = root / "train" / "0001"
    for sub in ("frame_left", "disp1_left", "cam_data"):
        (d / sub).mkdir(parents=True)
    import h5py

    K = scene.K
    for i in range(NF):
        _rgb(scene, i).save(d / "frame_left" / f"frame_left_{i + 1:04d}.png")
        disp = (K[0, 0] * 0.065 / scene.frame(i).depth).astype(np.float32)
        with h5py.File(d / "disp1_left" / f"disp1_left_{i + 1:04d}.dsp5", "w") as f:
            f.create_dataset("disparity", data=np.kron(disp, np.ones((2, 2), np.float32)))
    np.savetxt(d / "cam_data" / "extrinsics.txt",
               np.stack([rigid_inverse_np(scene.frame(i).pose).reshape(16) for i in range(NF)]))
    np.savetxt(d / "cam_data" / "intrinsics.txt", np.tile([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], (NF, 1)))
    return dict(dataset_location=str(root), dset="train")


def write_sintel(root, scene):
    from monst3r.datasets.sintel import write_cam, write_dpt

    for sub in ("final", "depth", "camdata_left", "dynamic_label_perfect"):
        (root / sub / "alley_1").mkdir(parents=True)
    for i in range(NF):
        n = f"frame_{i + 1:04d}"
        _rgb(scene, i).save(root / "final" / "alley_1" / f"{n}.png")
        write_dpt(str(root / "depth" / "alley_1" / f"{n}.dpt"), scene.frame(i).depth)
        write_cam(str(root / "camdata_left" / "alley_1" / f"{n}.cam"), scene.K, rigid_inverse_np(scene.frame(i).pose))
        mask = np.zeros((H, W), np.uint8)
        mask[:, : W // 2] = 255
        PIL.Image.fromarray(mask).save(root / "dynamic_label_perfect" / "alley_1" / f"{n}.png")
    return dict(dataset_location=str(root), dset="final")


def write_waymo(root, scene):
    from monst3r.datasets.waymo import write_exr_depth

    d = root / "segment-1.tfrecord"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = [f"{i:05d}_1" for i in range(NF)]
    for i, name in enumerate(frames):
        _rgb(scene, i).save(d / f"{name}.jpg", quality=95)
        depth = scene.frame(i).depth.copy()
        depth[rng.random(depth.shape) < 0.5] = 0  # sparse, like projected LiDAR
        write_exr_depth(str(d / f"{name}.exr"), depth)
        np.savez(d / f"{name}.npz", intrinsics=scene.K, cam2world=scene.frame(i).pose, distortion=np.zeros(5))
    pairs = np.array([[0, i, i + s] for s in (1, 2) for i in range(NF - s)])
    np.savez(root / "waymo_pairs_video.npz", scenes=np.array([d.name]), frames=np.array(frames), pairs=pairs)
    return dict(ROOT=str(root))


def write_dynamic_replica(root, scene):
    (root / "seq0" / "images").mkdir(parents=True)
    (root / "seq0" / "depths").mkdir()
    K = scene.K
    s = min(W, H) / 2
    records = []
    for i in range(NF):
        _rgb(scene, i).save(root / "seq0" / "images" / f"{i:04d}.png")
        bits = scene.frame(i).depth.astype(np.float16).view(np.uint16)
        PIL.Image.fromarray(bits).save(root / "seq0" / "depths" / f"{i:04d}.png")
        w2c = rigid_inverse_np(scene.frame(i).pose)
        records.append(dict(sequence_name="seq0", frame_number=i,
                            image=dict(path=f"seq0/images/{i:04d}.png"), depth=dict(path=f"seq0/depths/{i:04d}.png"),
                            viewpoint=dict(R=w2c[:3, :3].tolist(), T=w2c[:3, 3].tolist(),
                                           focal_length=[K[0, 0] / s, K[1, 1] / s],
                                           principal_point=[(W / 2 - K[0, 2]) / s, (H / 2 - K[1, 2]) / s],
                                           intrinsics_format="ndc_isotropic")))
    (root / "frame_annotations_train.json").write_text(json.dumps(records))
    return dict(dataset_location=str(root))


def write_synthetic(root, scene):
    from monst3r.datasets.synthetic import write_scene

    write_scene(scene, root / "scene5")
    return dict(dataset_location=str(root))


LOADERS = {
    "PointOdysseyDUSt3R": (write_pointodyssey, 0.03),
    "SpringDUSt3R": (write_spring, 1e-3),
    "SintelDUSt3R": (write_sintel, 1e-3),
    "Waymo": (write_waymo, 1e-3),
    "DynamicReplicaDUSt3R": (write_dynamic_replica, 0.03),
    "SyntheticDUSt3R": (write_synthetic, 1e-3),
}


def _build(name, kwargs, **extra):
    from monst3r.datasets.loader import dataset_class

    clip_kw = {} if name == "Waymo" else dict(S=2, strides=[1, 2], clip_step=1)
    return dataset_class(name)(resolution=[(W, H)], seed=3, **clip_kw, **kwargs, **extra)


def _check_consistency(views, scene, frames, depth_tol):
    """Each view: pose / intrinsics equal the scene's; pts3d = pose (depth K^-1 [u v 1]); the world points of
    view 0 project into view 1 where view 1 sees the same depth (static scene)."""
    for view, f in zip(views, frames):
        np.testing.assert_allclose(view["camera_pose"], scene.frame(f).pose, atol=1e-4)
        np.testing.assert_allclose(view["camera_intrinsics"], scene.K, atol=1e-3)
        d = view["depthmap"]
        valid = view["valid_mask"]
        assert valid.any() and np.array_equal(valid, (d > 0) & np.isfinite(view["pts3d"]).all(-1))
        np.testing.assert_allclose(d[valid], scene.frame(f).depth[valid], atol=depth_tol, rtol=depth_tol)
        cam = (view["pts3d"] - view["camera_pose"][:3, 3]) @ view["camera_pose"][:3, :3]
        u, v = np.meshgrid(np.arange(W), np.arange(H))
        proj = cam @ view["camera_intrinsics"].T
        np.testing.assert_allclose(proj[valid][:, 0] / proj[valid][:, 2], u[valid], atol=1e-2)
        np.testing.assert_allclose(proj[valid][:, 1] / proj[valid][:, 2], v[valid], atol=1e-2)
        np.testing.assert_allclose(cam[valid][:, 2], d[valid], rtol=1e-4, atol=1e-4)
    a, b = views
    pts = a["pts3d"][a["valid_mask"]]
    w2c = np.linalg.inv(b["camera_pose"].astype(np.float64))
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    proj = cam @ b["camera_intrinsics"].T.astype(np.float64)
    uu, vv = np.round(proj[:, 0] / proj[:, 2]).astype(int), np.round(proj[:, 1] / proj[:, 2]).astype(int)
    inside = (cam[:, 2] > 0) & (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
    assert inside.mean() > 0.5
    db = b["depthmap"][vv[inside], uu[inside]]
    ok = db > 0
    rel = np.abs(cam[inside][ok, 2] - db[ok]) / db[ok]
    assert np.median(rel) < 0.02 and (rel < 0.05).mean() > 0.8, (np.median(rel), (rel < 0.05).mean())


def _frames_of(ds, i, name):
    if name == "Waymo":
        _, a, b = ds.pair_names(i)
        return [int(a[:5]), int(b[:5])]
    first = 1 if name in ("SpringDUSt3R", "SintelDUSt3R") else 0
    return [f - first for f in ds.clips[i].frames]


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_loader_reads_its_layout(name, scene, tmp_path):
    if name == "SpringDUSt3R":
        pytest.importorskip("h5py")
    if name == "Waymo":
        from monst3r.datasets.waymo import read_exr_depth, write_exr_depth

        try:
            write_exr_depth(str(tmp_path / "probe.exr"), np.ones((2, 2), np.float32))
            read_exr_depth(str(tmp_path / "probe.exr"))
        except Exception:  # noqa: BLE001
            pytest.skip("no EXR codec (OpenCV without OpenEXR and no openexr package)")
    writer, depth_tol = LOADERS[name]
    kwargs = writer(tmp_path / "data", scene)
    ds = _build(name, kwargs)
    if name == "PointOdysseyDUSt3R":
        assert [s.name for s in ds.sequences] == ["seq_a"]  # seq_b tracks too few points
    expected_len = {"Waymo": 5}.get(name, (NF - 2 + 1) + (NF - 4 + 1))
    if name in ("SpringDUSt3R",):
        expected_len = len(range(1, NF - 2 + 2)) + len(range(1, NF - 4 + 2))
    if name == "SintelDUSt3R":
        expected_len = len(range(1, NF - 2 + 1)) + len(range(1, NF - 4 + 1))
    assert len(ds) == expected_len
    for i in range(len(ds)):
        views = ds[i]
        assert VIEW_KEYS <= set(views[0])
        assert views[0]["img"].shape == (3, H, W) and views[0]["img"].dtype == torch.float32
        assert views[0]["dataset"] == ds.dataset_label
        _check_consistency(views, scene, _frames_of(ds, i, name), depth_tol)
        if name == "SintelDUSt3R":
            m = views[0]["dynamic_mask"]
            assert m.dtype == bool and m.shape == (H, W) and m[:, : W // 2 - 2].all() and not m[:, W // 2 + 2:].any()
    # the collated batch has the documented types
    loader = get_data_loader(ds, batch_size=2, num_workers=0, shuffle=False, drop_last=False)
    v1, _ = next(iter(loader))
    assert v1["pts3d"].shape == (2, H, W, 3) and v1["valid_mask"].dtype == torch.bool
    assert isinstance(v1["label"], list) and len(v1["idx"]) == 3


def test_pointodyssey_pose_convention_issue_67(scene, tmp_path):
    """anno['extrinsics'] are world-to-camera: using them as camera poses (the original's issue #67) breaks the
    cross-view consistency that the default (inverted) convention satisfies."""
    kwargs = write_pointodyssey(tmp_path / "po", scene)
    good = _build("PointOdysseyDUSt3R", kwargs)
    i = next(k for k, c in enumerate(good.clips) if c.stride == 2)
    _check_consistency(good[i], scene, list(good.clips[i].frames), 0.03)
    bad = _build("PointOdysseyDUSt3R", kwargs, extrinsics_are_w2c=False)
    with pytest.raises(AssertionError):
        _check_consistency(bad[i], scene, list(bad.clips[i].frames), 0.03)


def test_in_memory_synthetic_and_portrait_transpose(scene):
    ds = parse_dataset_expression("SyntheticDUSt3R(num_scenes=1, num_frames=3, width=64, height=48, strides=[1], "
                                  "num_objects=0, scene_seed=5, resolution=[(64, 48)], seed=1)")
    assert len(ds) == 2 and ds.sequences[0].name == "scene5"
    views = ds[0]
    np.testing.assert_allclose(views[0]["camera_pose"], scene.frame(0).pose, atol=1e-5)
    np.testing.assert_array_equal(views[0]["depthmap"], scene.frame(0).depth)
    # portrait crop: the view is transposed to landscape, true_shape keeps the portrait shape
    from monst3r.datasets.base import transpose_to_landscape

    view = dict(img=torch.zeros(3, 8, 4), valid_mask=np.zeros((8, 4), bool), depthmap=np.zeros((8, 4), np.float32),
                pts3d=np.zeros((8, 4, 3), np.float32), camera_intrinsics=np.diag([1.0, 2.0, 1.0]),
                true_shape=np.int32((8, 4)), dynamic_mask=np.zeros((8, 4), bool))
    transpose_to_landscape(view)
    assert view["img"].shape == (3, 4, 8) and view["depthmap"].shape == (4, 8) and view["dynamic_mask"].shape == (4, 8)
    np.testing.assert_array_equal(view["camera_intrinsics"], np.array([[0, 2.0, 0], [1.0, 0, 0], [0, 0, 1]]))


# ============================================================================================== combinators
class _Toy(EasyDataset):
    def __init__(self, n, res=((4, 4),)):
        self.n, self._resolutions = n, [tuple(r) for r in res]

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return idx


def test_combinators():
    a, b = _Toy(3), _Toy(5)
    m = 2 * a
    assert isinstance(m, MulDataset) and len(m) == 6 and m[5] == 2 and m[(3, 1)] == (1, 1)
    r = 7 @ a
    assert isinstance(r, ResizedDataset) and repr(r).startswith("7 @")
    with pytest.raises(RuntimeError):
        r[0]
    r.set_epoch(0)
    perm = np.random.default_rng(777).permutation(3)
    assert [r[i] for i in range(7)] == list(np.concatenate([perm] * 3)[:7])
    assert repr(10_000 @ a).startswith("10_000 @")
    c = a + b + a
    assert isinstance(c, CatDataset) and len(c) == 11 and c[3] == 0 and c[8] == 0 and c[(10, 1)] == (2, 1)
    with pytest.raises(IndexError):
        c[11]
    with pytest.raises(ValueError):
        (a + _Toy(2, res=((8, 4),)))._resolutions


def test_batched_sampler_distributed_partition():
    ds = _Toy(21, res=((4, 4), (8, 4), (8, 6)))
    samplers = [BatchedRandomSampler(ds, 2, 3, world_size=2, rank=r) for r in (0, 1)]
    for s in samplers:
        s.set_epoch(5)
    parts = [list(s) for s in samplers]
    assert all(len(p) == len(s) == 10 for p, s in zip(parts, samplers))
    idx = [i for p in parts for i, _ in p]
    assert sorted(idx) == sorted(set(idx)) and max(idx) < 20
    for p in parts:
        for k in range(0, len(p), 2):
            assert p[k][1] == p[k + 1][1]  # one aspect ratio per batch
    with pytest.raises(ValueError):
        BatchedRandomSampler(ds, 2, 3, world_size=2, rank=0, drop_last=False)


def test_resolutions_and_transforms(tmp_path, scene):
    kwargs = write_synthetic(tmp_path / "syn", scene)
    from monst3r.datasets.synthetic_pairs import SyntheticDUSt3R

    ds = SyntheticDUSt3R(resolution=64, transform="ColorJitter", **kwargs)
    assert ds._resolutions == [(64, 64)] and ds.transform is ColorJitter
    assert SyntheticDUSt3R(resolution=(64, 48), **kwargs).transform is ImgNorm
    with pytest.raises(ValueError, match="landscape"):
        SyntheticDUSt3R(resolution=[(48, 64)], **kwargs)
    with pytest.raises(ValueError):
        SyntheticDUSt3R(resolution=[(64, 48)], transform="Blur", **kwargs)


# ============================================================================================== errors
@pytest.mark.parametrize("expr, script", [
    ("10 @ PointOdysseyDUSt3R(dset='train', dataset_location='{M}', resolution=[(512, 288)])",
     "data/prepare_pointodyssey.sh"),
    ("10 @ TarTanAirDUSt3R(dataset_location='{M}', resolution=[(512, 288)])", "data/prepare_tartanair.sh"),
    ("SpringDUSt3R(dataset_location='{M}', resolution=[(512, 288)])", "data/prepare_spring.sh"),
    ("SintelDUSt3R(dataset_location='{M}', resolution=[(512, 224)])", "data/prepare_sintel.sh"),
    ("4_000 @ Waymo(ROOT='{M}', resolution=[(512, 288)])", "data/prepare_waymo.sh"),
    ("DynamicReplicaDUSt3R(dataset_location='{M}', resolution=[(512, 288)])", "data/prepare_dynamic_replica.sh"),
])
def test_missing_dataset_folder_names_the_script(expr, script, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(Monst3rInputError) as exc:
        parse_dataset_expression(expr.replace("{M}", missing))
    assert script in str(exc.value) and missing in str(exc.value)
    for p in ("data/prepare_training.md",) + ((script,) if script.endswith(".sh") else ()):
        assert os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(__file__)), p)), p


@pytest.mark.parametrize("expr, part", [
    ("10_000 @ PointOdyseyDUSt3R(dset='train', resolution=[(512, 288)])", "PointOdyseyDUSt3R"),
    ("10 @ TarTanAirDUSt3R(dset=__import__('os').getcwd())", "__import__"),
    ("10 @ TarTanAirDUSt3R(dset=os.sep)", "os.sep"),
    ("'ten' @ TarTanAirDUSt3R(dset='Hard')", "'ten' @ TarTanAirDUSt3R"),
    ("10 @ TarTanAirDUSt3R(dset='Hard', resolution=[(512, 288)], bogus=3)", "bogus"),
    ("10 @ TarTanAirDUSt3R(dset='Hard', resolution=[(512, 288)]", "parse"),
    ("10 @ TarTanAirDUSt3R(dset='Hard', transform=Blur)", "Blur"),
    ("10 @ [TarTanAirDUSt3R(dset='Hard')]", "[TarTanAirDUSt3R(dset='Hard')]"),
    ("10 - TarTanAirDUSt3R(dset='Hard')", "10 - TarTanAirDUSt3R"),
    ("[None]", "[None]"),
    ("ARKitScenes(split='train', ROOT='data/arkit', resolution=224)", "ARKitScenes"),
])
def test_malformed_expressions_name_the_offending_part(expr, part):
    with pytest.raises(Monst3rInputError) as exc:
        parse_dataset_expression(expr)
    assert part in str(exc.value), str(exc.value)


def test_split_terms_is_syntax_aware():
    terms = split_top_level_terms("1 @ SintelDUSt3R(dset='a+b') + 2 @ TarTanAirDUSt3R(dset='Hard')")
    assert terms == ["1 @ SintelDUSt3R(dset='a+b')", "2 @ TarTanAirDUSt3R(dset='Hard')"]
    with pytest.raises(SafeParseError):
        split_top_level_terms("1 @ Nope()")


def test_waymo_pair_builder_matches_the_loader(scene, tmp_path):
    """data/prepare_waymo.py make-pairs builds the pair list the Waymo loader reads (every camera, stride, start)."""
    import importlib.util

    if not _cv2_has_exr():
        pytest.importorskip("OpenEXR")
    kwargs = write_waymo(tmp_path / "w", scene)
    (tmp_path / "w" / "waymo_pairs_video.npz").unlink()
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "prepare_waymo.py")
    spec = importlib.util.spec_from_file_location("prepare_waymo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_pairs(kwargs["ROOT"], strides=(1, 2, 3))
    ds = _build("Waymo", kwargs)
    assert len(ds) == (NF - 1) + (NF - 2) + (NF - 3)
    assert ds.pair_names(0) == ("segment-1.tfrecord", "00000_1", "00001_1")
    _check_consistency(ds[len(ds) - 1], scene, [0, 3], 1e-3)


def _cv2_has_exr():
    try:
        import cv2

        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
        return bool(cv2.imwrite(os.path.join(os.environ.get("TMPDIR", "/tmp"), "_probe_monst3r.exr"),
                                np.ones((2, 2), np.float32)))
    except Exception:  # noqa: BLE001
        return False
