"""The 4D viewer in a real browser: headless Chromium (Debian's package) driven by Playwright.

Starts ``viser/visualizer_monst3r.py`` on a free loopback port on a result folder (ground-truth geometry of a
synthetic scene written by ``save_result``), waits for the scene, screenshots it, checks that the 3-D view is
not blank and that the timeline control exists, then stops the server. The same scene multiplied by 1e6
(coordinates beyond float16, which viser's default point clouds overflowed into a blank view) must render too,
with its scale factor shown in the GUI. ``MONST3R_SAVE_SCREENSHOT=path`` keeps the screenshot of the ordinary
scene (how docs/viewer.png was made).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from server_helpers import free_port, launch_chromium, require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[1.0, 1e6], ids=["unit_scale", "coords_1e6"])
def result_folder(tmp_path_factory, request):
    from monst3r.datasets.synthetic import SceneConfig, SyntheticScene
    from monst3r.io import save_result
    from monst3r.result import Reconstruction

    scene = SyntheticScene(SceneConfig(width=192, height=128, num_frames=6, seed=2))
    fr = scene.frames()
    factor = request.param
    poses = np.stack([f.pose for f in fr]).astype(np.float64)
    poses[:, :3, 3] *= factor
    res = Reconstruction(poses=poses, intrinsics=np.stack([f.intrinsics for f in fr]),
                         depths=np.stack([f.depth for f in fr]).astype(np.float64) * factor, confs=np.full((6, 128, 192), 5.0, np.float32),
                         init_confs=np.full((6, 128, 192), 5.0, np.float32),
                         dynamic_masks=np.stack([f.dynamic_mask for f in fr]),
                         rgb=np.stack([f.rgb for f in fr]).astype(np.float32) / 255)
    folder = save_result(res, tmp_path_factory.mktemp("res") / "synthetic", glb=False, depth_gif=False)
    assert factor == 1.0 or np.load(folder / "frame_0000.npy").max() > 65504  # beyond float16 on disk
    return folder, factor


def test_viewer_renders_in_headless_chromium(result_folder):
    result_folder, factor = result_folder
    require_browser()
    from playwright.sync_api import sync_playwright

    port = free_port()
    srv = subprocess.Popen([sys.executable, str(ROOT / "viser" / "visualizer_monst3r.py"), "--data",
                            str(result_folder), "--port", str(port), "--point_size", "0.01", "--camera_size", "0.05"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            line = srv.stdout.readline()
            if line.startswith("viewer:") or srv.poll() is not None:
                break
        assert srv.poll() is None, "viewer exited early"
        assert f"http://127.0.0.1:{port}" in line  # loopback by default
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Timestep").first.wait_for(timeout=60000)
            assert page.get_by_text("Playing").count() >= 1
            assert page.get_by_text("Scene scale").count() == 1  # viser's label is not tied to its input: by value
            scale_text = page.locator("input[value^='1 unit = ']").input_value(timeout=10000)
            page.wait_for_timeout(4000)
            png = page.screenshot()
            browser.close()
        import io

        import PIL.Image

        img = np.asarray(PIL.Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
        view = img[200:, 100:900]  # the 3-D canvas, away from the GUI panel and the notification
        assert view.std() > 5.0, f"3-D view looks blank (std {view.std():.2f})"
        assert scale_text == ("1 unit = 1 result units" if factor == 1.0 else "1 unit = 1e+07 result units")
        if os.environ.get("MONST3R_SAVE_SCREENSHOT") and factor == 1.0:
            Path(os.environ["MONST3R_SAVE_SCREENSHOT"]).write_bytes(png)
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    assert srv.returncode is not None
