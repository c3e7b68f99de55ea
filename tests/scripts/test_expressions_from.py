"""dtnerf-render --expressions-from: an expression-driven model follows a video's or a dataset's expressions."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from data_processing import dataset_layout as layout
from dtnerf_ns.scripts.render_talking_video import RenderError, RenderTalkingVideo

SAMPLE_CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


def need_clip() -> Path:
    if not SAMPLE_CLIP.is_file():
        pytest.skip(f"sample clip {SAMPLE_CLIP} is absent (it lives in ../shared/data beside the repository)")
    return SAMPLE_CLIP


def streams(path: Path) -> dict:
    """Frame count, fps and audio (codec, seconds; None without an audio stream) of an mp4."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        return {
            "video_codec": video.codec_context.name,
            "frames": len(frames),
            "fps": float(video.average_rate),
            "audio_codec": None if audio is None else audio.codec_context.name,
            "audio_seconds": None if audio is None else float(audio.duration * audio.time_base),
            "first": frames[0],
        }


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Frames [N, H, W, 3] as an H.264 mp4 without sound."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def video_only(source: Path, path: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``source``'s picture, re-encoded without its sound track."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate)  # read while open: PyAV 18.1 refuses stream properties after close
        limit = int(round(seconds * float(rate)))
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(limit), container.decode(stream))]
    return write_video(path, np.stack(frames), int(round(float(rate))))


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- rendering
def test_a_video_drives_the_expressions_with_its_sound(tiny_sahs_expression_config: Path, tmp_path: Path):
    out = tmp_path / "reenact.mp4"
    RenderTalkingVideo(
        load_config=tiny_sahs_expression_config, expressions_from=need_clip(), start=2.0, duration=1.0, output=out,
        resolution_scale=0.5,  # 32 px: a CPU renders the tiny model at about a frame per second
    ).main()  # fmt: skip
    info = streams(out)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["fps"] == pytest.approx(25.0) and info["frames"] == 25  # 1 s of the driver at the model's 25 fps
    assert abs(info["audio_seconds"] - 1.0) < 1 / 25.0
    assert 10 < info["first"].mean() < 245  # a picture, not a blank frame
    assert not list(tmp_path.glob(".*partial*"))


def test_a_driver_without_sound_gives_a_silent_video(tiny_sahs_expression_config: Path, tmp_path: Path):
    silent = video_only(need_clip(), tmp_path / "silent.mp4", 0.2)
    out = tmp_path / "reenact.mp4"
    RenderTalkingVideo(load_config=tiny_sahs_expression_config, expressions_from=silent, output=out, resolution_scale=0.5).main()
    info = streams(out)
    assert info["audio_codec"] is None and info["frames"] == 5


def test_self_reenactment_follows_the_test_frames(
    tiny_sahs_expression_config: Path, tiny_dtnerf_dataset: Path, tmp_path: Path, monkeypatch
):
    from dtnerf_ns.core.talking_head_model import TalkingHeadModel

    transforms = json.loads((tiny_dtnerf_dataset / layout.TRANSFORMS).read_text())
    test_files = set(transforms["test_filenames"])
    test_frames = [f["frame_index"] for f in transforms["frames"] if f["file_path"] in test_files]
    expected = np.load(tiny_dtnerf_dataset / layout.EXPRESSION)[test_frames]

    command = RenderTalkingVideo(
        load_config=tiny_sahs_expression_config, expressions_from=tiny_dtnerf_dataset, split="test",
        output=tmp_path / "self.mp4",
    )  # fmt: skip
    drive = command.driver_expressions(tiny_dtnerf_dataset, fps=float(transforms["dtnerf"]["fps"]))
    assert drive.transfer == "absolute" and drive.driver_frames.tolist() == test_frames
    np.testing.assert_allclose(drive.coefficients, expected, rtol=0, atol=1e-5 * np.abs(expected).max())

    handed = []
    original = TalkingHeadModel.driven_by

    def spy(self, **signals):
        handed.append(signals)
        return original(self, **signals)

    monkeypatch.setattr(TalkingHeadModel, "driven_by", spy)
    command.main()
    assert len(handed) == 1 and "audio_features" not in handed[0]
    np.testing.assert_allclose(handed[0]["expression"].numpy(), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    info = streams(tmp_path / "self.mp4")
    assert info["frames"] == len(test_frames) and info["audio_codec"] == "aac"  # the dataset's audio.wav


# ---------------------------------------------------------------- refusals, one line each
def test_exactly_one_driver_is_required(tmp_path: Path):
    config = tmp_path / "config.yml"  # never read: the options are refused first
    for kwargs in ({}, {"audio": tmp_path / "a.wav", "expressions_from": tmp_path / "v.mp4"}):
        with pytest.raises(RenderError, match="either --audio .* or --expressions-from .*exactly one") as err:
            RenderTalkingVideo(load_config=config, output=tmp_path / "x.mp4", **kwargs).main()
        one_line(err)
    with pytest.raises(RenderError, match="--split chooses frames of a dataset"):
        RenderTalkingVideo(load_config=config, expressions_from=write_video(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8)),
                           split="test", output=tmp_path / "x.mp4").main()  # fmt: skip


def test_a_driver_of_the_wrong_kind_for_the_model(
    tiny_sahs_expression_config: Path, tiny_trained_config: Path, tiny_dtnerf_dataset: Path, tmp_path: Path
):
    out = tmp_path / "x.mp4"
    with pytest.raises(RenderError, match="driven by expression coefficients.*--expressions-from") as err:
        RenderTalkingVideo(load_config=tiny_sahs_expression_config, audio=tiny_dtnerf_dataset / layout.AUDIO_WAV, output=out).main()
    one_line(err)
    with pytest.raises(RenderError, match="driven by audio, not expressions; pass speech with --audio") as err:
        RenderTalkingVideo(load_config=tiny_trained_config, expressions_from=tiny_dtnerf_dataset, output=out).main()
    one_line(err)
    assert not out.exists()


def test_a_video_without_a_face_stops_in_one_line(tiny_sahs_expression_config: Path, tmp_path: Path):
    grey = write_video(tmp_path / "grey.mp4", np.full((12, 96, 96, 3), 128, np.uint8))
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "dtnerf_ns.scripts.render_talking_video", "--load-config", str(tiny_sahs_expression_config),
         "--expressions-from", str(grey), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("dtnerf-render: error: --expressions-from") and "no face" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
