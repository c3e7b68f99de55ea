"""dtnerf-render: new audio in, H.264 mp4 with the audio muxed in out; pose walks; bad input stops with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dtnerf_ns.scripts.render_talking_video import (
    RenderError,
    RenderTalkingVideo,
    nearest_poses,
    ping_pong,
    read_pose_file,
    smooth_windows,
)
from data_processing.errors import ProcessingError
from dtnerf_ns.scripts.trained_model import TrainedModelError

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech_en_60s.wav"


def write_audio(path: Path, seconds: float, rate: int = 44100, channels: int = 2, silent: bool = False) -> Path:
    """Speech-like audio (amplitude-modulated tones) in any container PyAV can encode (.wav via wave, .m4a as AAC)."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.0 if silent else 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    pcm = (np.zeros_like(t) + signal) * 32767
    pcm = np.repeat(pcm.astype("<i2")[:, None], channels, axis=1)
    if path.suffix == ".wav":
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
        return path
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = layout
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[start : start + 1024].reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def probe(path: Path) -> dict:
    """Codec names, frame count, size and the two streams' durations of an mp4."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        info = {
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "frames": len(frames),
            "size": (video.codec_context.width, video.codec_context.height),
            "fps": float(video.average_rate),
            "audio_seconds": float(audio.duration * audio.time_base),
            "first": frames[0],
            "mean": np.stack(frames).mean(axis=(1, 2, 3)),
        }
    return info


# ---------------------------------------------------------------- helpers
def test_ping_pong_walks_forward_and_back():
    assert ping_pong(4, 10).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert ping_pong(1, 3).tolist() == [0, 0, 0]
    steps = np.abs(np.diff(ping_pong(7, 100)))
    assert steps.max() == 1  # never jumps


def test_nearest_poses_prefers_matching_rotation_and_position():
    def pose(angle, x):
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, 0, s, x], [0, 1, 0, 0], [-s, 0, c, 4.0]], dtype=np.float32)

    references = np.stack([pose(0.0, 0.0), pose(0.3, 0.0), pose(0.0, 1.0)])
    queries = np.stack([pose(0.28, 0.0), pose(0.0, 0.9), pose(0.01, 0.05)])
    assert nearest_poses(queries, references, scene_scale=4.0).tolist() == [1, 2, 0]


def test_read_pose_file_formats_and_errors(tmp_path):
    poses = np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))
    poses[:, 0, 3] = [0.0, 1.0, 2.0]
    np.save(tmp_path / "p.npy", poses)
    (tmp_path / "t.json").write_text(json.dumps({"frames": [{"transform_matrix": p.tolist()} for p in poses]}))
    for name in ("p.npy", "t.json"):
        loaded = read_pose_file(tmp_path / name)
        assert loaded.shape == (3, 3, 4) and loaded[:, 0, 3].tolist() == [0.0, 1.0, 2.0]
    np.save(tmp_path / "bad.npy", np.zeros((3, 2, 2)))
    with pytest.raises(RenderError, match=r"\[K, 4, 4\]"):
        read_pose_file(tmp_path / "bad.npy")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(RenderError, match="cannot read poses"):
        read_pose_file(tmp_path / "bad.json")


def test_smooth_windows_averages_neighbours():
    windows = np.zeros((5, 16, 29), dtype=np.float32)
    windows[2] = 4.0
    smoothed = smooth_windows(windows)
    assert smoothed.shape == windows.shape
    assert smoothed[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 1.0, 0.0]


# ---------------------------------------------------------------- end to end
def test_render_new_audio_to_mp4_with_sound(tiny_trained_config: Path, tmp_path: Path):
    audio = write_audio(tmp_path / "speech.m4a", 0.9, rate=44100, channels=2)
    out = tmp_path / "talk.mp4"
    RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out).main()
    info = probe(out)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["size"] == (64, 64)  # the tiny dataset's full resolution
    assert info["fps"] == pytest.approx(25.0)
    assert abs(info["frames"] - 0.9 * 25) <= 1  # AAC priming may add a few ms to the decoded audio
    assert abs(info["audio_seconds"] - info["frames"] / 25.0) < 1 / 25.0  # durations agree within a frame
    assert 10 < info["first"].mean() < 245  # a picture, not a blank frame
    assert not list(tmp_path.glob(".*partial*"))


def test_render_pose_options_and_head_only(tiny_trained_config: Path, tmp_path: Path):
    audio = write_audio(tmp_path / "speech.wav", 0.4, rate=22050, channels=1)
    fixed = tmp_path / "fixed.mp4"
    RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=fixed, pose_frame=0, head_only=True).main()
    walked = tmp_path / "walked.mp4"
    poses = np.tile(np.eye(4, dtype=np.float32), (2, 1, 1))
    poses[:, 2, 3] = 4.0
    np.save(tmp_path / "poses.npy", poses)
    RenderTalkingVideo(
        load_config=tiny_trained_config, audio=audio, output=walked, poses=tmp_path / "poses.npy", resolution_scale=2.0,
        smooth=True,
    ).main()
    assert probe(fixed)["frames"] == 10 and probe(walked)["size"] == (128, 128)
    with pytest.raises(RenderError, match="not a training frame"):
        RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=tmp_path / "x.mp4", pose_frame=10_000).main()


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_one_clear_error(tiny_trained_config: Path, tmp_path: Path):
    silent = write_audio(tmp_path / "silent.wav", 1.0, silent=True)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio")
    out = tmp_path / "out.mp4"
    cases = [
        (dict(audio=silent), RenderError, "silent"),
        (dict(audio=text), Exception, "cannot read audio"),
        (dict(audio=tmp_path / "missing.wav"), Exception, "not found"),
        (dict(audio=silent, output=tmp_path / "no" / "dir" / "x.mp4"), RenderError, "does not exist"),
        (dict(audio=silent, output=tmp_path / "x.avi"), RenderError, r"\.mp4"),
    ]
    for kwargs, error, message in cases:
        kwargs = {"load_config": tiny_trained_config, "output": out, **kwargs}
        with pytest.raises(error, match=message):
            RenderTalkingVideo(**kwargs).main()
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_refuses_a_model_trained_on_other_audio_features(tiny_trained_config: Path, tmp_path: Path, monkeypatch):
    import data_processing.audio_features as audio_features

    trained_kind = audio_features.DEFAULT_KIND
    monkeypatch.setattr(audio_features, "FEATURE_KINDS", {"some-later-features": None})
    out = tmp_path / "talk.mp4"
    with pytest.raises(RenderError, match=re.escape(f"trained on '{trained_kind}' audio features, which this version does "
                       "not compute (it computes some-later-features); re-run dtnerf-process")):
        RenderTalkingVideo(load_config=tiny_trained_config, audio=write_audio(tmp_path / "a.wav", 1.0), output=out).main()
    assert not out.exists()


def test_users_own_features_drive_a_model_trained_on_them(tiny_trained_config: Path, tmp_path: Path, monkeypatch):
    from dtnerf_ns.scripts import trained_model

    audio, out = write_audio(tmp_path / "a.wav", 1.0), tmp_path / "talk.mp4"
    np.save(tmp_path / "ds.npy", np.zeros((25, 16, 41), np.float32))
    with pytest.raises(RenderError, match="not on features from a file; drop --audio-features"):
        RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out, audio_features=tmp_path / "ds.npy").main()
    load = trained_model.load_trained_model

    def as_if_trained_on_a_file(config):
        trained = load(config)
        trained.pipeline.datamanager.train_dataparser_outputs.metadata["audio_feature_kind"] = "external:ds.npy"
        return trained

    monkeypatch.setattr(trained_model, "load_trained_model", as_if_trained_on_a_file)
    with pytest.raises(RenderError, match="pass the same encoder's features of .*a.wav with --audio-features"):
        RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out).main()
    np.save(tmp_path / "wide.npy", np.zeros((25, 16, 1024), np.float32))
    with pytest.raises(RenderError, match=r"windows of \[16, 1024\] per frame, but the model was trained on \[16, 41\]"):
        RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out, audio_features=tmp_path / "wide.npy").main()
    with pytest.raises(ProcessingError, match=r"do not fit 25 frames"):
        np.save(tmp_path / "short.npy", np.zeros((20, 16, 41), np.float32))
        RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out, audio_features=tmp_path / "short.npy").main()
    assert not out.exists()
    RenderTalkingVideo(load_config=tiny_trained_config, audio=audio, output=out, audio_features=tmp_path / "ds.npy").main()
    assert probe(out)["frames"] == 25


def test_cli_refuses_a_config_that_is_not_dtnerf(tmp_path: Path):
    import yaml
    from nerfstudio.configs.method_configs import method_configs

    config = tmp_path / "run" / "config.yml"
    config.parent.mkdir()
    config.write_text(yaml.dump(method_configs["nerfacto"]))
    speech = SPEECH if SPEECH.is_file() else write_audio(tmp_path / "speech.wav", 1.0)
    out = tmp_path / "talk.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "dtnerf_ns.scripts.render_talking_video", "--load-config", str(config),
         "--audio", str(speech), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("dtnerf-render: error: ") and "not a talking-head model of dtnerf_ns" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    with pytest.raises(TrainedModelError, match="no such file"):
        RenderTalkingVideo(load_config=tmp_path / "nope.yml", audio=speech, output=out).main()


def test_a_run_of_the_old_package_layout_is_refused_in_one_line(tmp_path: Path):
    from dtnerf_ns.scripts.trained_model import load_trained_model

    config = tmp_path / "config.yml"
    config.write_text("!!python/object:dtnerf_ns.models.dtnerf_model.DTNeRFModelConfig {}\n")
    with pytest.raises(TrainedModelError) as info:
        load_trained_model(config)
    message = str(info.value)
    assert "\n" not in message and "older dtnerf_ns" in message and "retrain with ns-train" in message
