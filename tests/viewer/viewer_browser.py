"""Drive nerfstudio's web viewer (viser) in headless Chromium: helpers for tests/viewer and the README screenshot.

Needs Debian's ``chromium`` and ``chromedriver`` (``scripts/install_browser.sh``) and ``selenium`` (the ``dev``
extra). WebGL runs on SwiftShader (software), so no GPU or display is needed.

Screenshots of a trained model for the README (the view of training camera ``--camera``, output ``rgb``, one PNG per
time-slider value; docs/images/ was made with dtnerf-small trained for 3000 steps on the sample clip)::

    python tests/viewer/viewer_browser.py outputs/.../config.yml docs/images/viewer.png --time 0.61 0.58 --camera 118
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

VENV_BIN = Path(sys.executable).parent
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
# Software WebGL (SwiftShader) for viser's three.js canvas in a headless browser without a GPU.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-gpu-sandbox",
    "--mute-audio",
    "--no-first-run",
)


def find_browser() -> Tuple[Optional[str], Optional[str], str]:
    """(chromium, chromedriver, why-not): paths of the executables, or None with the reason they are missing."""
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = next((p for p in map(shutil.which, CHROMEDRIVER_NAMES) if p), None)
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    why = ""
    if missing:
        why = (
            f"{' and '.join(missing)} not on PATH (scripts/install_browser.sh installs Debian's chromium and "
            "chromium-driver; it needs root or passwordless sudo)"
        )
    return chromium, driver, why


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------- the viewer process
class ViewerProcess:
    """``ns-viewer --load-config CONFIG --viewer.websocket-port PORT`` in its own process group; a context manager
    that always ends the whole group (also when the body fails)."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        port: Optional[int] = None,
        command: Optional[List[str]] = None,
        extra_args: Optional[List[str]] = None,
    ):
        self.config = Path(config)
        self.port = port or free_port()
        self.log_path = Path(log_path)
        exe = shutil.which("ns-viewer") or str(VENV_BIN / "ns-viewer")
        self.command = command or [exe]
        self.command = self.command + [
            "--load-config",
            str(self.config),
            "--viewer.websocket-port",
            str(self.port),
            "--viewer.websocket-host",
            "127.0.0.1",
            *(extra_args or []),
        ]
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ViewerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Raises RuntimeError if the viewer has exited or logged a traceback (a crash in a thread can leave the
        process, and its web server, running without a scene)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"ns-viewer exited with code {self.proc.returncode}:\n{self.log_tail()}")
        if "Traceback (most recent call last)" in self.log_tail(200_000):
            raise RuntimeError(f"ns-viewer failed:\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> None:
        """Waits until the viewer answers HTTP on its port; raises RuntimeError if it exits or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"ns-viewer did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


# ---------------------------------------------------------------------------------------------- the browser
# Keeps the images the page receives (viser hands each background frame to the page as a Blob through
# URL.createObjectURL), so a test can read the frames the viewer sent byte for byte. The canvas is no measure of
# them: viser's AdaptiveDpr rescales its drawing buffer with the measured frame rate (528x363 then 457x315 for an
# 880x606 view, seen on a busy 2-core machine), so one frame shown twice can differ on screen by 0.3 grey levels
# on average and 14 at sharp edges.
FRAME_RECORDER_JS = """
window.__receivedImages = [];
window.__receivedImageCount = 0;
const createObjectURL = URL.createObjectURL.bind(URL);
URL.createObjectURL = function (obj) {
  if (obj instanceof Blob && obj.type.startsWith("image/")) {
    window.__receivedImageCount += 1;
    window.__receivedImages.push({seq: window.__receivedImageCount, blob: obj});
    if (window.__receivedImages.length > 8) window.__receivedImages.shift();
  }
  return createObjectURL(obj);
};
"""

_READ_LAST_IMAGE_JS = """
const done = arguments[arguments.length - 1];
const images = window.__receivedImages || [];
if (!images.length) { done(null); return; }
const last = images[images.length - 1];
last.blob.arrayBuffer().then((buffer) => {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  done([last.seq, btoa(text)]);
});
"""


def make_driver(chromium: str, chromedriver: str, width: int = 1200, height: int = 800):
    """Headless Chromium with software WebGL, through selenium and the given chromedriver (no driver download).
    Every page it opens records the images it receives (:data:`FRAME_RECORDER_JS`)."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FRAME_RECORDER_JS})
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    return driver


def image_stats(image: np.ndarray) -> dict:
    """Centre crop (the corner axes gizmo left out): standard deviation and number of distinct colours."""
    h, w = image.shape[:2]
    crop = image[h // 6 : h - h // 6, w // 6 : w - w // 6, :3].astype(np.int32)
    colours = np.unique(crop[..., 0] * 65536 + crop[..., 1] * 256 + crop[..., 2]).size
    return {"std": float(crop.std()), "colours": int(colours), "mean": float(crop.mean())}


def is_blank(image: np.ndarray) -> bool:
    """The empty scene (viser's flat background) has one colour; a rendered frame has hundreds and real variance."""
    stats = image_stats(image)
    return stats["std"] < 2.0 or stats["colours"] < 50


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


class ViewerPage:
    """The viewer's page in a selenium driver: the 3D canvas, the stats line and the control panel."""

    def __init__(self, driver, url: str, check: Optional[Callable[[], None]] = None):
        self.driver = driver
        self.url = url
        self.check = check or (lambda: None)  # called on every poll: raises when the viewer has failed

    def open(self) -> None:
        self.driver.get(self.url)

    # -- reading
    def _by(self):
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return By

    def canvas(self):
        return self.driver.find_element(self._by().CSS_SELECTOR, "canvas[data-engine]")

    def canvas_image(self) -> np.ndarray:
        """[H, W, 3] uint8 screenshot of the 3D view (where the viewer draws the rendered frames); a 1x1 black image
        while the page is still laying the view out (no canvas yet, or one of zero size)."""
        from PIL import Image  # noqa: PLC0415
        from selenium.common.exceptions import WebDriverException  # noqa: PLC0415

        try:
            png = self.canvas().screenshot_as_png
            return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        except (WebDriverException, ValueError, OSError):
            return np.zeros((1, 1, 3), dtype=np.uint8)

    def received_frame(self) -> Tuple[int, Optional[np.ndarray]]:
        """(sequence number, [H, W, 3] uint8) of the last image the page received, exactly as the viewer sent it
        (lossless with ``--viewer.image-format png``); (0, None) before the first. With depth compositing off
        (``--viewer.default-composite-depth False``) every image after the scene's set-up is a rendered frame."""
        import base64  # noqa: PLC0415

        from PIL import Image  # noqa: PLC0415

        last = self.driver.execute_async_script(_READ_LAST_IMAGE_JS)
        if last is None:
            return 0, None
        seq, data = last
        return int(seq), np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def page_image(self) -> np.ndarray:
        from PIL import Image  # noqa: PLC0415

        return np.asarray(Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB"))

    def text(self) -> str:
        return self.driver.find_element(self._by().TAG_NAME, "body").text

    def resolution(self) -> Optional[str]:
        """The stats line's ``Resolution: WxHpx`` of the last frame the viewer sent ("0x0px" before the first)."""
        match = re.search(r"Resolution:\s*(\d+x\d+)px", self.text())
        return match.group(1) if match else None

    def _row(self, label: str):
        """The control panel row (label + input) whose label reads ``label``."""
        xpath = f"//label[normalize-space()='{label}']/ancestor::div[contains(@class, 'mantine-Flex-root')][1]"
        return self.driver.find_element(self._by().XPATH, xpath)

    def slider_range(self, label: str) -> Optional[Tuple[float, float, float]]:
        """(min, max, value) of the slider labelled ``label``, or None where there is no such visible slider."""
        from selenium.common.exceptions import NoSuchElementException  # noqa: PLC0415

        try:
            thumb = self._row(label).find_element(self._by().CSS_SELECTOR, "[role='slider']")
        except NoSuchElementException:
            return None
        if not thumb.is_displayed():
            return None
        return tuple(float(thumb.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax", "aria-valuenow"))

    # -- controls
    def set_number(self, label: str, value: float) -> None:
        """Types ``value`` into the number box of the slider labelled ``label`` (as a user would)."""
        from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

        box = self._row(label).find_element(self._by().CSS_SELECTOR, "input.mantine-NumberInput-input")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value))
        box.send_keys(Keys.ENTER)

    def select(self, label: str, option: str) -> None:
        """Picks ``option`` in the dropdown labelled ``label`` (e.g. "Output type" -> "rgb")."""
        by = self._by()
        box = self._row(label).find_element(by.CSS_SELECTOR, "input.mantine-Select-input")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        box.click()
        xpath = f"//*[@role='option'][normalize-space()='{option}']"
        deadline = time.monotonic() + 10
        while True:
            options = [o for o in self.driver.find_elements(by.XPATH, xpath) if o.is_displayed()]
            if options:
                options[0].click()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no option {option!r} in {label!r}")
            time.sleep(0.2)

    def click_button(self, text: str) -> None:
        by = self._by()
        button = self.driver.find_element(by.XPATH, f"//button[normalize-space()='{text}']")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
        button.click()

    def tidy_for_screenshot(self) -> None:
        """Takes the focus and the mouse off the controls (no tooltip, no focus ring) and hides images that could not
        load (the Nerfstudio logo comes from docs.nerf.studio, unreachable offline)."""
        from selenium.webdriver.common.action_chains import ActionChains  # noqa: PLC0415

        self.driver.execute_script(
            "document.activeElement && document.activeElement.blur();"
            "for (const img of document.images) { if (!img.naturalWidth) img.style.visibility = 'hidden'; }"
        )
        ActionChains(self.driver).move_to_element_with_offset(self.canvas(), 0, 0).perform()
        time.sleep(1.0)

    # -- waiting
    def wait_for_frame(self, timeout: float, poll: float = 1.0) -> np.ndarray:
        """Polls until the page is connected, the viewer has sent a frame (its stats line shows the frame's
        resolution) and the 3D view is not blank; returns the view (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        image = None
        while time.monotonic() < deadline:
            self.check()
            if self.resolution() not in (None, "0x0"):  # None: not connected yet (no control panel)
                image = self.canvas_image()
                if not is_blank(image):
                    return image
            time.sleep(poll)
        stats = image_stats(image) if image is not None else {}
        raise TimeoutError(f"no rendered frame within {timeout:.0f} s (last view: {stats}, stats line: {self.resolution()})")

    def wait_resolution(self, timeout: float, prefix: str, poll: float = 1.0) -> Optional[str]:
        """Waits until the stats line's resolution starts with ``prefix``; returns it ("WxH"), or None at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            res = self.resolution() or ""
            if res.startswith(prefix):
                return res
            time.sleep(poll)
        return None

    def wait_frame_settled(
        self, timeout: float, resolution: str, previous_seq: int = 0, stable_polls: int = 3, poll: float = 1.0
    ) -> Tuple[int, Optional[np.ndarray]]:
        """Waits until the viewer has sent a frame after image ``previous_seq`` whose size is ``resolution``
        ("WxH", the full-resolution frame, not the quick low-resolution one) and has sent nothing since, over
        ``stable_polls`` polls. Returns (its sequence number, the frame), or (0, None) at the timeout."""
        deadline = time.monotonic() + timeout
        width, height = (int(v) for v in resolution.split("x"))
        last_seq, unchanged = -1, 0
        while time.monotonic() < deadline:
            self.check()
            seq, frame = self.received_frame()
            full = frame is not None and frame.shape[:2] == (height, width)
            unchanged = unchanged + 1 if seq == last_seq else 0
            last_seq = seq
            if seq > previous_seq and full and unchanged >= stable_polls - 1:
                return seq, frame
            time.sleep(poll)
        return 0, None

    def wait_settled(
        self,
        timeout: float,
        previous: Optional[np.ndarray] = None,
        resolution_prefix: Optional[str] = None,
        stable_polls: int = 3,
        poll: float = 1.0,
    ) -> Tuple[np.ndarray, bool]:
        """Waits for a new frame to settle: the view differs from ``previous`` (once), the stats line's resolution
        starts with ``resolution_prefix`` (the full-resolution frame, not the quick low-resolution one), and the view
        is unchanged over ``stable_polls`` polls. Returns (view, whether it settled before the timeout)."""
        deadline = time.monotonic() + timeout
        changed = previous is None
        history: List[np.ndarray] = []
        image = self.canvas_image()
        while time.monotonic() < deadline:
            self.check()
            image = self.canvas_image()
            if not changed and mean_abs_diff(image, previous) > 0:
                changed = True
                history = []
            history = (history + [image])[-stable_polls:]
            res = self.resolution() or ""
            full = resolution_prefix is None or res.startswith(resolution_prefix)
            if (
                changed
                and full
                and len(history) == stable_polls
                and all(mean_abs_diff(h, image) == 0 for h in history)
                and not is_blank(image)
            ):
                return image, True
            time.sleep(poll)
        return image, False


# ---------------------------------------------------------------------------------------------- README screenshot
# ns-viewer, with each browser's camera placed at a training camera (what clicking that camera's frustum does) and
# given that camera's field of view.
_VIEWER_AT_CAMERA = """
import sys
import threading
import time
import numpy as np
import viser.transforms as vtf
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO, Viewer
from nerfstudio.scripts.viewer.run_viewer import entrypoint

CAMERA = int(sys.argv.pop(1))
_handle_new_client = Viewer.handle_new_client

def _to_camera(self, client):
    while not (self.ready and client.camera._state.update_timestamp):  # until the browser has reported its camera
        time.sleep(0.2)
    cameras = self.pipeline.datamanager.train_dataset.cameras
    idx = min(CAMERA, len(cameras) - 1)
    camera = cameras[idx]
    c2w = camera.camera_to_worlds.cpu().numpy()
    position = c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO
    # Position, look-at point and up direction (OpenGL camera: looks along -z, y up), each set explicitly, so the
    # pose does not depend on where the browser's camera was before (setting wxyz keeps the old up direction).
    # The browser moves its camera with transitions and reports where it ended up: set again until that is the pose.
    for _ in range(20):
        with client.atomic():
            client.camera.fov = float(2 * np.arctan(float(camera.cy) / float(camera.fy)))  # the camera's vertical FOV
            client.camera.up_direction = c2w[:3, 1]
            client.camera.position = position
            client.camera.look_at = position - c2w[:3, 2] * float(np.linalg.norm(position))
        time.sleep(2.0)
        forward = vtf.SO3(client.camera.wxyz).as_matrix()[:, 2]  # viser cameras look along +z
        if np.abs(client.camera.position - position).max() < 1e-3 and forward @ -c2w[:3, 2] > 1 - 1e-6:
            break
    print(f"viewer camera at training camera {idx}: position {client.camera.position}", flush=True)

def handle_new_client(self, client):
    _handle_new_client(self, client)
    threading.Thread(target=_to_camera, args=(self, client), daemon=True).start()

Viewer.handle_new_client = handle_new_client
entrypoint()
"""


def readme_screenshot(
    config: Path,
    out: Path,
    times: Sequence[float],
    camera: int,
    output: str,
    max_res: int,
    width: int,
    height: int,
    timeout: float,
) -> List[Path]:
    from PIL import Image  # noqa: PLC0415

    chromium, driver_path, why = find_browser()
    if why:
        raise SystemExit(why)
    written = []
    log = Path(tempfile.gettempdir()) / f"{out.stem}_ns-viewer.log"
    command = [sys.executable, "-c", _VIEWER_AT_CAMERA, str(camera)]
    with ViewerProcess(config, log_path=log, command=command) as viewer:
        viewer.wait_ready(timeout)
        driver = make_driver(chromium, driver_path, width, height)
        try:
            page = ViewerPage(driver, viewer.url, check=viewer.check)
            page.open()
            page.wait_for_frame(timeout)
            page.click_button("Hide Train Cams")
            page.select("Output type", output)
            page.set_number("Max res", max_res)
            for i, t in enumerate(times):
                before = page.canvas_image()
                page.set_number("Time", t)
                # A new frame, settled at full resolution (the view is wider than tall: max_res pixels wide).
                image, settled = page.wait_settled(
                    timeout, previous=before, resolution_prefix=f"{max_res}x", stable_polls=3, poll=2.0
                )
                print(f"time {t}: settled={settled} resolution={page.resolution()} {image_stats(image)}")
                path = out if i == 0 else out.with_name(f"{out.stem}_time_{t:g}{out.suffix}")
                page.tidy_for_screenshot()
                Image.fromarray(page.page_image()).save(path, optimize=True)
                written.append(path)
        finally:
            driver.quit()
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Screenshot of ns-viewer showing a trained dtnerf model.")
    parser.add_argument("config", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--time", type=float, nargs="+", default=[0.3], help="time slider values (one PNG each)")
    parser.add_argument("--camera", type=int, default=0, help="training camera whose view is shown")
    parser.add_argument("--output", default="rgb", help="viewer output type")
    parser.add_argument("--max-res", type=int, default=512)
    parser.add_argument("--width", type=int, default=1040)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path in readme_screenshot(
        args.config, args.out, args.time, args.camera, args.output, args.max_res, args.width, args.height, args.timeout
    ):
        print(path)


if __name__ == "__main__":
    main()
