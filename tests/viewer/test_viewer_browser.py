"""``ns-viewer`` on a tiny trained dtnerf checkpoint, opened in headless Chromium: it renders a frame (not the empty
scene), shows a Time slider, and moving the slider changes the rendered frame.

Needs Debian's chromium and chromedriver (``scripts/install_browser.sh``, run by ``scripts/test.sh``) and selenium
(the ``dev`` extra); skips with the reason where they are missing. No GPU: WebGL runs on SwiftShader.
"""

from __future__ import annotations

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from viewer_browser import (  # noqa: E402  (tests/viewer is on sys.path: pytest's default import mode)
    ViewerPage,
    ViewerProcess,
    find_browser,
    image_stats,
    is_blank,
    make_driver,
    mean_abs_diff,
)

CHROMIUM, CHROMEDRIVER, MISSING = find_browser()
# Checked at collection time, so a machine without the browser does not train the tiny model for nothing.
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "")

# Generous: the 2-core CI machine imports nerfstudio in ~20 s and renders on the CPU while other tests run.
VIEWER_START_S = 300
FIRST_FRAME_S = 300
SETTLE_S = 180


@pytest.mark.parametrize("method", ["dtnerf", "sahs-nerf"])
def test_viewer_renders_frame_and_time_slider_changes_it(method, request, tmp_path):
    """Both methods: a frame and the Time slider. DT-NeRF: moving the slider shows another frame (its head-less
    backdrop and audio change; a 30-step SAHS model over its static background barely differs between frames yet)."""
    from PIL import Image  # noqa: PLC0415

    trained = request.getfixturevalue("tiny_trained_config" if method == "dtnerf" else "tiny_sahs_trained_config")
    # Frames are compared as the viewer sent them (the page records each image it receives), losslessly (PNG, not
    # the JPEG at quality 40/75 the viewer sends by default) and without depth compositing (so every image the page
    # receives is a frame). The canvas only shows that a frame arrived: viser rescales it with the frame rate.
    extra = ["--viewer.image-format", "png", "--viewer.default-composite-depth", "False"]
    with ViewerProcess(trained, log_path=tmp_path / "ns-viewer.log", extra_args=extra) as viewer:
        process = viewer.proc
        viewer.wait_ready(VIEWER_START_S)
        driver = make_driver(CHROMIUM, CHROMEDRIVER, width=1200, height=800)
        try:
            page = ViewerPage(driver, viewer.url, check=viewer.check)
            page.open()

            # 1. A rendered frame arrives (the empty scene is one flat colour).
            try:
                frame = page.wait_for_frame(FIRST_FRAME_S)
            except TimeoutError as err:
                Image.fromarray(page.page_image()).save(tmp_path / "no_frame.png")
                pytest.fail(f"{err}; page screenshot {tmp_path / 'no_frame.png'}; viewer log:\n{viewer.log_tail()}")
            Image.fromarray(page.page_image()).save(tmp_path / "viewer.png")
            stats = image_stats(frame)
            assert not is_blank(frame), f"blank view: {stats}"
            assert stats["colours"] >= 100 and stats["std"] >= 3.0, f"view looks empty: {stats}"
            assert page.resolution() not in (None, "0x0"), f"stats line: {page.resolution()!r}"
            seq, sent = page.received_frame()
            assert sent is not None and not is_blank(sent), "the page shows a frame but recorded none it received"

            # 2. The Time slider (the viewer adds it when the datamanager's cameras have times) goes from 0 to 1.
            assert page.slider_range("Time") == (0.0, 1.0, 0.0), (
                "no visible Time slider in the control panel:\n" + page.text()
            )

            if method == "dtnerf":
                # 3. Moving the slider re-renders a different frame (another frame's audio and blink). Max res 64 makes
                # every full-resolution frame quick; each frame is taken once the viewer has sent it at that size.
                page.set_number("Max res", 64)
                resolution = page.wait_resolution(SETTLE_S, "64x")
                assert resolution, f"the view never reached 64 px (stats line {page.resolution()!r})"
                seq_0, at_0 = page.wait_frame_settled(SETTLE_S, resolution)
                assert at_0 is not None, f"no settled {resolution} frame at time 0"
                page.set_number("Time", 1)
                seq_1, at_1 = page.wait_frame_settled(SETTLE_S, resolution, previous_seq=seq_0)
                assert at_1 is not None, f"time 1: no new settled {resolution} frame"
                assert page.slider_range("Time")[2] == 1.0
                page.set_number("Time", 0)
                _, at_0_again = page.wait_frame_settled(SETTLE_S, resolution, previous_seq=seq_1)
                assert at_0_again is not None, f"back at time 0: no new settled {resolution} frame"
                for name, image in (("time_0", at_0), ("time_1", at_1), ("time_0_again", at_0_again)):
                    Image.fromarray(image).save(tmp_path / f"{name}.png")

                # A deterministic model: one frame rendered twice is the same, bit for bit; two frames differ.
                assert mean_abs_diff(at_0, at_0_again) == 0.0, (
                    f"time 0 rendered twice differs by {mean_abs_diff(at_0, at_0_again):.3f} (mean |diff|, 0-255); "
                    f"images in {tmp_path}"
                )
                other_time = mean_abs_diff(at_0, at_1)
                assert other_time > 0.05, f"time 0 vs time 1 differ by only {other_time:.3f}; images in {tmp_path}"
        finally:
            driver.quit()
    assert process.poll() is not None, "ns-viewer still running after the test"
