"""The Gradio GUI (``python demo.py`` without ``--input``) end to end in headless Chromium (Playwright).

Starts the GUI as a user would, with the tiny golden checkpoint and small settings given as launch flags, checks
that it listens on loopback only, uploads 4 small synthetic frames, presses Run, waits for the result and checks
the page (status line, 3-D model viewer with a canvas, the frames gallery, the result files for download, no
error toast) and the files on disk; then Run without frames shows the one-line error on the page. ``MONST3R_SAVE_SCREENSHOT_GUI=path`` keeps the screenshot.
"""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_helpers import free_port, launch_chromium, require, require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 4


def _non_loopback_addresses():
    """Addresses of this machine other than 127.0.0.1 that a server on all interfaces would answer on."""
    out = {"127.0.1.1"}  # still loopback range, but not the address the GUI binds
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            out.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(a for a in out if a != "127.0.0.1")


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import PIL.Image

    from monst3r.datasets.synthetic import SceneConfig, SyntheticScene

    out = tmp_path_factory.mktemp("gui_frames")
    scene = SyntheticScene(SceneConfig(width=128, height=96, num_frames=N_FRAMES, seed=1))
    paths = []
    for i, f in enumerate(scene.frames()):
        paths.append(out / f"{i:05d}.png")
        PIL.Image.fromarray(f.rgb).save(paths[-1])
    return paths


def test_gui_runs_the_demo_in_headless_chromium(frames, tmp_path, golden):
    require("gradio", __import__("importlib").util.find_spec("gradio") is not None)
    require_browser()
    from playwright.sync_api import sync_playwright

    weights = golden("model", "tiny_linear", "tiny_linear.pth")
    port = free_port()
    out_root = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(tmp_path / "gradio_tmp"), PYTHONUNBUFFERED="1")
    srv = subprocess.Popen([sys.executable, str(ROOT / "demo.py"), "--weights", str(weights), "--device", "cpu",
                            "--image_size", "224", "--niter", "3", "--flow_loss_weight", "0", "--winsize", "2",
                            "--output_dir", str(out_root), "--seq_name", "guiseq", "--server_port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    log = []
    try:
        t0 = time.time()
        while time.time() - t0 < 180:
            line = srv.stdout.readline()
            log.append(line)
            if "Running on local URL" in line or srv.poll() is not None:
                break
        assert srv.poll() is None, "GUI exited early:\n" + "".join(log)
        assert re.search(rf"http://127\.0\.0\.1:{port}\b", line), line  # loopback by default
        for host in _non_loopback_addresses():
            assert _refused(host, port), f"the GUI answers on {host}: it must listen on 127.0.0.1 only"

        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("MonST3R Demo").first.wait_for(timeout=60000)
            assert page.get_by_text("tiny_linear.pth").count() >= 1  # the launch flags reach the page
            page.locator("input[type=file]").first.set_input_files([str(f) for f in frames])
            for f in frames:  # uploaded: listed by name (gradio splits stem and extension, the label is whole)
                page.locator(f'[aria-label="{f.name}"]').first.wait_for(timeout=60000)
            page.get_by_role("button", name="Run").click()
            page.get_by_text("Done:").first.wait_for(timeout=480000)
            status = page.locator("#monst3r-status").inner_text()
            files_text = " ".join(page.locator("#monst3r-files [aria-label]").evaluate_all(
                "els => els.map(e => e.getAttribute('aria-label'))"))
            model_canvas = page.locator("#monst3r-model canvas").count()
            gallery_imgs = page.locator("img").count()
            errors = page.locator(".toast-body.error, .toast-wrap .error").count() + page.get_by_text(
                re.compile(r"^Error$")).count()
            page.wait_for_timeout(2000)
            png = page.screenshot(full_page=True)
            # a user mistake (Run with nothing uploaded) is an error message on the page, and the server lives on
            page2 = browser.new_page()
            page2.goto(f"http://127.0.0.1:{port}/")
            page2.get_by_role("button", name="Run").click()
            page2.get_by_text("upload a video or some frames first").first.wait_for(timeout=60000)
            browser.close()
        assert srv.poll() is None
        if os.environ.get("MONST3R_SAVE_SCREENSHOT_GUI"):
            Path(os.environ["MONST3R_SAVE_SCREENSHOT_GUI"]).write_bytes(png)
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()

    out = out_root / "guiseq"
    assert f"Done: {N_FRAMES} frames" in status and str(out) in status, status
    assert errors == 0, "an error toast is shown"
    assert model_canvas >= 1, "no 3-D model viewer canvas"
    assert gallery_imgs >= N_FRAMES, gallery_imgs
    for name in ("scene.glb", "pred_traj.txt", "pred_traj_tum.txt", "pred_intrinsics.txt", "guiseq.zip"):
        assert name in files_text, (name, files_text)
    # the disk: the command line's result folder and nothing else in the output root (the zip offered for
    # download lives in the GUI process's temporary folder, removed when it exits)
    assert sorted(p.name for p in out_root.iterdir()) == ["guiseq"]
    names = {p.name for p in out.iterdir()}
    assert {"pred_traj.txt", "pred_intrinsics.txt", "scene.glb"} <= names
    assert sum(n.startswith("frame_") and n.endswith(".npy") for n in names) == N_FRAMES
    assert len((out / "pred_traj.txt").read_text().splitlines()) == N_FRAMES


def test_demo_without_input_and_without_gradio_says_what_to_do():
    """(tests/test_demo.py's version skips when gradio is installed, as it is for make test: hide it here.)"""
    code = ("import sys, runpy; sys.modules['gradio'] = None; sys.argv = ['demo.py']; "
            "sys.exit(runpy.run_path('demo.py', run_name='__main__'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: ") and "--input" in r.stderr and "gradio" in r.stderr
