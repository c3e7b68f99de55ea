"""dtnerf-process's worker processes give the serial path's outputs; inputs that deserve a line (silent audio, a
face too small, a clip stored sideways) get one; the corrected audio offset is in report.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image
from data_processing.video import iter_frames_at_rate, probe_video

from .conftest import FACE30, HDTF, need
from .test_process_video import error_line, no_output_left, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("clip", [HDTF, FACE30])
def test_a_range_decodes_the_frames_of_a_whole_decode(clip):
    info = probe_video(need(clip))
    whole = list(iter_frames_at_rate(info, 25.0))
    n = len(whole)
    for start in (1, n // 3, n - 4):
        part = list(iter_frames_at_rate(info, 25.0, n, start=start, threads=False))
        assert [k for k, _ in part] == list(range(start, n))
        assert all(np.array_equal(frame, whole[k][1]) for k, frame in part), start


def test_workers_give_the_serial_paths_outputs(tmp_path):
    from data_processing.pipeline import Pipeline, ProcessingOptions

    options = ProcessingOptions(size=128, max_frames=48)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    Pipeline(need(HDTF), serial, options=options, workers=0).run()
    report = Pipeline(HDTF, parallel, options=options, workers=2).run()
    assert report["workers"] == 2 and report["frames"] == 48
    # The audio features come from a worker process, byte for byte those of the serial path.
    assert (serial / layout.AUDIO_FEATURES).read_bytes() == (parallel / layout.AUDIO_FEATURES).read_bytes()
    assert (serial / layout.AUDIO_WAV).read_bytes() == (parallel / layout.AUDIO_WAV).read_bytes()
    for i in (0, 23, 24, 47):  # both ranges, their first and last frames
        assert layout.image_path(serial, i).read_bytes() == layout.image_path(parallel, i).read_bytes()
    assert (serial / layout.BACKGROUND).read_bytes() == (parallel / layout.BACKGROUND).read_bytes()
    # The second range's tracker warms up on the frames before frame 24: landmarks agree to a fraction of a pixel.
    a, b = np.load(serial / layout.LANDMARKS), np.load(parallel / layout.LANDMARKS)
    np.testing.assert_array_equal(a[:24], b[:24])
    assert np.abs(a[24:, :, :2] - b[24:, :, :2]).max() < 0.2


def _silent_talking_clip(path):
    from .conftest import ffmpeg

    ffmpeg("-i", HDTF, "-t", "3", "-af", "volume=0", "-c:v", "copy", "-c:a", "aac", path)
    return path


def test_a_silent_audio_track_is_refused_naming_audio(tmp_path):
    clip = _silent_talking_clip(tmp_path / "mute.mp4")
    out = tmp_path / "out"
    line = error_line(run_cli(clip, "-o", out))
    assert "mute.mp4 is silent (its loudest moments are" in line and "pass the speech with --audio FILE" in line
    assert no_output_left(out)
    # Its speech given with --audio: fine.
    speech = tmp_path / "speech.wav"
    from .conftest import ffmpeg

    ffmpeg("-i", HDTF, "-t", "3", "-vn", "-ac", "1", speech)
    result = run_cli(clip, "-o", out, "--audio", speech, "--size", "64")
    assert result.returncode == 0, result.stderr


def test_a_small_face_is_said_to_be_too_small(tmp_path):
    from .conftest import ffmpeg

    small = tmp_path / "small.mp4"
    ffmpeg("-i", need(HDTF), "-t", "2", "-vf", "scale=96:96", "-c:a", "copy", small)
    out = tmp_path / "out"
    result = run_cli(small, "-o", out)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "note: the face is only" in text and "the model will look soft" in text
    assert "from a face of about 197 px" in text
    report = json.loads((out / layout.REPORT).read_text())
    assert report["crop"]["enlarged"] is True and report["crop"]["face_size_px"] < 96


def test_a_clip_stored_sideways_is_refused_with_the_turn_that_fixes_it(tmp_path):
    from .conftest import ffmpeg

    sideways = tmp_path / "sideways.mp4"
    # Stored turned 90 degrees counter-clockwise, without rotation metadata.
    ffmpeg("-i", need(HDTF), "-t", "2", "-vf", "transpose=2", "-metadata:s:v", "rotate=0", "-c:a", "copy", sideways)
    out = tmp_path / "out"
    line = error_line(run_cli(sideways, "-o", out, "--size", "128"))
    assert "lies on its side in the frames" in line and "run again with --rotate 90" in line
    assert no_output_left(out)
    result = run_cli(sideways, "-o", out, "--size", "128", "--rotate", "90")
    assert result.returncode == 0, result.stderr
    upright = read_image(layout.image_path(out, 10))
    assert upright.shape == (128, 128, 3)
    landmarks = np.load(out / layout.LANDMARKS)
    from data_processing.face_regions import CHIN, FOREHEAD

    assert (landmarks[:, CHIN, 1] > landmarks[:, FOREHEAD, 1]).all()  # chin below forehead: upright


def test_the_corrected_audio_offset_is_reported(tmp_path):
    from .conftest import ffmpeg

    late = tmp_path / "late_audio.mp4"  # the audio stream starts 0.3 s after the video stream
    ffmpeg("-i", need(HDTF), "-itsoffset", "0.3", "-i", HDTF, "-map", "0:v", "-map", "1:a", "-t", "3", "-c", "copy", late)
    out = tmp_path / "out"
    result = run_cli(late, "-o", out, "--size", "64")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / layout.REPORT).read_text())
    from data_processing.audio import decode_audio

    # 0.3 s less the sample clip's AAC priming, which the stream copy keeps in the audio's timestamps.
    assert report["audio"]["start_offset_seconds"] == pytest.approx(decode_audio(late).start_offset_seconds)
    assert 0.2 < report["audio"]["start_offset_seconds"] < 0.31
