"""Procedural dynamic scenes with exact ground truth (no rendering engine: vectorised NumPy ray casting).

A scene is a closed, textured room (6 inward-facing planes) with a few static textured boxes, 1..N independently
moving rigid textured objects (spheres and oriented boxes; translation + rotation), and a smooth camera
trajectory (rotation + translation; ``static_camera=True`` gives a near-static camera with millimetre jitter).
Everything is a deterministic function of the seed. Textures are fractal colour-noise tiles (spectral
synthesis, detail at every scale) with a smooth checker, attached to each object's own frame, mip-mapped and
sampled trilinearly from the pixel footprint (band-limited, no aliasing at any resolution), so that optical flow
and matching work (OpenCV's DIS flow recovers the ground truth to ~0.1 px). Mild Lambertian shading from a fixed
world light.

Conventions (as in the rest of the project):

* poses are camera-to-world 4x4 matrices, OpenCV camera axes (x right, y down, z forward); the world has y
  pointing down as well (floor at ``y > 0``);
* pinhole intrinsics ``K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]``; pixel ``(u, v)`` = integer (column, row) at
  the pixel centre; the ray of a pixel is ``((u - cx)/f, (v - cy)/f, 1)`` in the camera frame, so the ray
  parameter of a hit is its depth;
* depth = camera-frame z; every pixel is valid (the room is closed);
* time = frame index; objects move continuously in time.

Per frame (:meth:`SyntheticScene.frame`): RGB ``uint8 [H,W,3]``, depth ``float32 [H,W]``, c2w pose
``float64 [4,4]``, intrinsics ``float64 [3,3]``, dynamic mask ``bool [H,W]`` (pixels showing a moving object),
surface ids ``int16 [H,W]``.
Per ordered pair (:meth:`SyntheticScene.flow`): optical flow ``float32 [H,W,2]`` (u, v in pixels) from frame i to
frame j with camera AND object motion, and a validity mask ``bool [H,W]`` (the surface point is in front of
camera j, projects inside the image, faces camera j and is the surface seen at the nearest pixel of frame j, i.e.
not occluded). :meth:`SyntheticScene.rigid_flow` is the flow that camera motion alone would cause.
Ideal network output for a pair (:meth:`SyntheticScene.ideal_pair`): frame i's pointmap and frame j's pointmap,
both in camera i's frame (what a perfect MonST3R outputs as ``pred1['pts3d']`` and
``pred2['pts3d_in_other_view']``), with optional multiplicative depth noise, scale and confidence maps;
:meth:`SyntheticScene.ideal_inference` batches these into the dict ``inference()`` returns.

Command line (the demo's embedded default input)::

    python -m monst3r.datasets.synthetic --out DIR --frames N --size WxH --seed S [--overwrite] [--static-camera]

writes into ``DIR`` (built in a temporary sibling folder, renamed at the end; nothing half-written on error):

=========================== ==========================================================================
``00000.png`` ...           RGB frames (8-bit PNG, ``%05d`` numbering from 0)
``gt_traj.txt``             camera-to-world poses, standard TUM: ``timestamp tx ty tz qx qy qz qw`` (w-last,
                            one ``#`` header line, timestamp = frame index)
``poses.npy``               ``float64 [N,4,4]`` camera-to-world (OpenCV axes)
``intrinsics.npy``          ``float64 [N,3,3]``
``depth/00000.npy`` ...     ``float32 [H,W]`` depth (camera z, scene units ~ metres; all pixels valid)
``dynamic_masks/00000.png`` 8-bit 0/255 PNG, 255 = moving object (same names as the frames, so the folder can
                            serve as ``dynamic_mask_root``)
``meta.json``               generator parameters (seed, size, frames, static_camera, num_objects, fov_deg,
                            format version) and the list of files
=========================== ==========================================================================

Bad input (unparsable/out-of-range size, zero frames, negative seed, an existing non-empty output folder
without ``--overwrite``) raises :class:`monst3r.errors.Monst3rInputError`; the command prints it as one line and
exits with status 2.
"""
from monst3r.datasets.synthetic.config import (FORMAT_VERSION, MAX_FRAMES, MAX_SIDE, MIN_SIZE, SceneConfig,
                                               parse_size, window_pairs)
from monst3r.datasets.synthetic.scene import Frame, SyntheticScene
from monst3r.datasets.synthetic.writer import main, write_scene

__all__ = [
    "SceneConfig",
    "Frame",
    "SyntheticScene",
    "parse_size",
    "window_pairs",
    "write_scene",
    "main",
]
# the package's layout: config.py (SceneConfig, sizes), textures.py (mip-mapped procedural textures and the rigid
# primitives), scene.py (the ray-cast scene: frames, flows, ideal network outputs), writer.py (the folder layout
# above and the command line; __main__.py runs it)
