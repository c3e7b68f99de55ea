"""Renders every test frame of a trained pipeline (dtnerf, sahs-nerf) and gathers the metrics of the papers' tables.

Frames are rendered at the model's resolution (the cameras of its test split: 128 px for ``dtnerf-small`` on a 512 px
dataset), composited over each frame's headless image as in training, clamped to [0, 1], and compared with the test
images at that resolution. The face region is each frame's ground-truth face mask. A metric whose weights or inputs
are missing is reported unavailable with the reason; nothing else stops the evaluation. The offline lip-sync score
(:mod:`.lip_sync_score`) measures its mouth openings on LMD's face mesh: mediapipe runs once per image for both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

import numpy as np
import torch
from jaxtyping import Float

from data_processing import dataset_layout
from data_processing.errors import ProcessingError
from dtnerf_ns.core.data.talking_head_dataset import FACE_MASK
from dtnerf_ns.evaluation.fid import FIDMetric, fid_from_features
from dtnerf_ns.evaluation.image_metrics import image_metrics
from dtnerf_ns.evaluation.landmark_distance import LandmarkDistance, to_uint8
from dtnerf_ns.evaluation.lip_sync_score import (
    OpeningLandmarker,
    audio_phone_classes,
    lip_sync_score,
    offset_frames,
    opening_correlation,
)
from dtnerf_ns.evaluation.lpips_metric import LPIPSMetric
from dtnerf_ns.evaluation.syncnet import SyncNetS, crop_face, face_boxes, frames_at_25fps, load_syncnet, sync_confidence
from dtnerf_ns.evaluation.weights import WeightsUnavailable, first_line

DEFINITIONS = {
    "psnr": "dB, -10 log10 MSE; face: MSE over the ground-truth face-mask pixels; mean over test frames",
    "ssim": "Gaussian 11x11 (sigma 1.5) SSIM map of the whole frame, averaged over all pixels / over the face mask",
    "l1": "mean absolute RGB error in [0, 1], over all pixels / over the face mask",
    "lpips": "LPIPS v0.1 AlexNet; face: its spatial map averaged over the face mask",
    "fid": "Frechet distance of InceptionV3 pool3 features, renders vs ground truth over the test set; face: frames "
    "black outside the face mask",
    "lmd": "mean distance of the 40 mediapipe lip landmarks, render vs ground truth, pixels at 512x512; frames "
    "without a face in either image are counted, not scored",
    "sync": "SyncNet confidence (syncnet_python: median - min of the distance curve over AV offsets -15..+15 "
    "frames) on 224x224 face crops at 25 fps with the test frames' audio",
    "lip_sync": "offline lip-sync score, not SyncNet (no weights): ROC AUC of the mouth opening (mediapipe inner-lip "
    "gap 13-14 / face height 10-152) separating open-vowel frames from bilabial p/b/m frames, phones from "
    "pocketsphinx's all-phone decoder on the clip's whole audio (the test frames' part of it); best over AV offsets of "
    "+-0.2 s (positive: video lags audio) and at offset 0; with the mouth-opening spread (std over frames) and the "
    "frame-by-frame Pearson r of render vs ground-truth opening",
}

T = TypeVar("T")


@dataclass
class EvalOptions:
    """What ``dtnerf-eval`` was asked for."""

    lpips_weights: Optional[Path] = None
    """AlexNet weights for LPIPS (None: the torch hub cache)."""
    fid_weights: Optional[Path] = None
    """InceptionV3 weights for FID (None: the torch hub cache)."""
    syncnet_weights: Optional[Path] = None
    """syncnet_python's weights (None: the torch hub cache)."""
    strip_frames: int = 4
    """Test frames kept for the strip, evenly spaced."""


@dataclass
class EvalResult:
    """Everything the report needs."""

    metrics: Dict[str, Dict[str, Any]]
    """Per metric: ``available`` and its values, or ``available: False`` and the ``reason``."""
    per_frame: List[Dict[str, Any]]
    """Per test frame: its frame index and its per-frame metrics."""
    info: Dict[str, Any]
    """Test split, resolution, device, rendering speed (the CLI adds the run's config and checkpoint)."""
    strip: List[Dict[str, Any]] = field(default_factory=list)
    """Per strip frame: ``frame_index``, ``gt`` and ``render`` uint8 [H, W, 3]."""


@dataclass
class SyncInputs:
    """What SyncNet needs besides the renders: a face box per test frame and the test frames' audio."""

    boxes: Float[np.ndarray, "frames 3"]
    """Face box of each test frame (dataset order), see :func:`~dtnerf_ns.evaluation.syncnet.face_boxes`."""
    order: np.ndarray
    """Dataset indices of the test frames in time order."""
    audio: Float[np.ndarray, "samples"]
    """16 kHz audio from the first test frame to the end of the last."""


def unavailable(reason: str) -> Dict[str, Any]:
    """A metric's JSON entry when it cannot be computed."""
    return {"available": False, "reason": reason}


def _load_optional(build: Callable[[], T]) -> Union[T, str]:
    """The metric object, or the reason it cannot be built."""
    try:
        return build()
    except WeightsUnavailable as err:
        return first_line(err)


def _mean(values: List[float]) -> float:
    """Mean of the finite values (NaN marks a frame without a face mask)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _clip_audio(dataset, frame_indices: np.ndarray) -> Union[Tuple[Float[np.ndarray, "samples"], int, int], str]:
    """The dataset's whole 16 kHz audio (frame k is at k / fps s of audio.wav) and the first and last test frames, or
    the reason they cannot be had (the test frames must be one contiguous stretch)."""
    from data_processing.audio import load_audio  # noqa: PLC0415

    order = np.argsort(frame_indices)
    if not np.all(np.diff(frame_indices[order]) == 1):
        return "the test frames are not one contiguous stretch of the clip"
    try:
        audio = load_audio(Path(dataset.metadata["data_dir"]) / dataset_layout.AUDIO_WAV)
    except ProcessingError as err:
        return str(err)
    return audio, int(frame_indices[order[0]]), int(frame_indices[order[-1]])


def _sync_inputs(dataset, frame_indices: np.ndarray, fps: float) -> Union[SyncInputs, str]:
    """Face boxes from the ground-truth face masks and the test audio, or the reason they cannot be had."""
    from data_processing.audio import SAMPLE_RATE  # noqa: PLC0415
    from data_processing.io_utils import read_mask  # noqa: PLC0415

    clip = _clip_audio(dataset, frame_indices)
    if isinstance(clip, str):
        return clip
    audio, first, last = clip
    order = np.argsort(frame_indices)
    if "face" not in dataset.pixel_map_files:
        return "the model's datamanager reads no face masks (add 'face' to --pipeline.datamanager.pixel-maps)"
    masks = [read_mask(path, dataset.size(0)) for path in dataset.pixel_map_files["face"]]
    try:
        boxes = face_boxes([masks[i] for i in order])
    except ValueError as err:
        return str(err)
    in_dataset_order = np.empty_like(boxes)
    in_dataset_order[order] = boxes
    audio = audio[int(round(first / fps * SAMPLE_RATE)) : int(round((last + 1) / fps * SAMPLE_RATE))]
    return SyncInputs(boxes=in_dataset_order, order=order, audio=audio)


def _lip_sync_metric(
    dataset, frame_indices: np.ndarray, fps: float, openings: Dict[str, List[float]]
) -> Dict[str, Any]:
    """The offline lip-sync score of the renders and of the ground truth (same audio), their mouth-opening spreads
    and the frame-by-frame correlation of the two openings; unavailable when neither can be scored."""
    clip = _clip_audio(dataset, frame_indices)
    if isinstance(clip, str):
        return unavailable(clip)
    audio, first, last = clip
    order = np.argsort(frame_indices)  # the openings are in dataset order, the audio in time order
    render, gt = (np.asarray(openings[key], dtype=np.float64)[order] for key in ("render", "gt"))
    # The whole clip is decoded and the test frames' classes taken from it: the decoder normalises its features over
    # what it is given, and a 6 s cut decoded alone agreed with the whole-file decode on only 84% of macron's test
    # frames (ground-truth AUC 0.69 against 0.92).
    classes = audio_phone_classes(audio, last + 1, fps)[first:]
    tracks = {"render": render, "ground_truth": gt}
    scores = {name: lip_sync_score(track, classes, offset_frames(fps)) for name, track in tracks.items()}
    if all(np.isnan(score.auc) for score in scores.values()):
        reason = scores["ground_truth"].reason or scores["render"].reason or "no offset could be scored"
        return unavailable(f"lip-sync score: {reason}")
    r, compared = opening_correlation(render, gt)
    return {
        "available": True,
        "frames": len(order),
        "offset_sign": "positive: the video lags the audio",
        **{name: score.to_dict() for name, score in scores.items()},
        "opening_pearson_r": r,
        "frames_compared": compared,
    }


def evaluate(
    pipeline,
    options: EvalOptions,
    on_frame: Optional[Callable[[], None]] = None,
    on_stage: Optional[Callable[[str], None]] = None,
) -> EvalResult:
    """Renders the test split of ``pipeline`` (any talking-head model: its final frames, ``rgb``) and computes every
    available metric.

    Args:
        pipeline: A loaded pipeline whose datamanager holds the test split as ``eval_dataset``.
        options: Weights and strip settings.
        on_frame: Called after each test frame (progress).
        on_stage: Called with the name of each step after the frames (FID, SyncNet).
    """
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    device = model.device
    num = len(dataset)
    frame_indices = np.asarray(dataset.metadata["frame_indices"], dtype=np.int64)
    fps = float(dataset.metadata.get("fps", 25.0))

    lpips_metric = _load_optional(lambda: LPIPSMetric(device, options.lpips_weights))
    fid_metric = _load_optional(lambda: FIDMetric(device, options.fid_weights))
    syncnet = _load_optional(lambda: load_syncnet(options.syncnet_weights, device))
    sync_inputs = _sync_inputs(dataset, frame_indices, fps) if isinstance(syncnet, SyncNetS) else syncnet
    mesh = OpeningLandmarker()  # one face mesh per image for LMD and the lip-sync score's mouth openings
    landmarks = LandmarkDistance(mesh)

    strip_at = set(np.linspace(0, num - 1, min(options.strip_frames, num)).round().astype(int).tolist())
    per_frame: List[Dict[str, Any]] = []
    strip: List[Dict[str, Any]] = []
    features: Dict[str, List[np.ndarray]] = {"render": [], "gt": [], "render_face": [], "gt_face": []}
    crops: Dict[str, List[np.ndarray]] = {"render": [], "gt": []}  # dataset order
    openings: Dict[str, List[float]] = {"render": [], "gt": []}  # dataset order
    render_seconds = 0.0
    cameras = dataset.cameras.to(device)
    for i in range(num):
        data = dataset[i]
        start = time.perf_counter()
        outputs = model.render_final_frame(cameras[i : i + 1])  # the final frame, as every consumer shows it
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        render_seconds += time.perf_counter() - start
        pred = outputs["rgb"].detach().clamp(0, 1).float().cpu()
        gt = data["image"][..., :3].float()
        mask = data[FACE_MASK][..., 0] > 0.5 if FACE_MASK in data else torch.ones(gt.shape[:2], dtype=torch.bool)

        row: Dict[str, Any] = {"frame_index": int(frame_indices[i]), **image_metrics(pred, gt, mask)}
        if isinstance(lpips_metric, LPIPSMetric):
            row.update(lpips_metric(pred, gt, mask))
        if isinstance(fid_metric, FIDMetric):
            inside = mask[..., None].float()
            for key, feat in zip(features, fid_metric.features(torch.stack([pred, gt, pred * inside, gt * inside]))):
                features[key].append(feat)
        pred_u8, gt_u8 = to_uint8(pred.numpy()), to_uint8(gt.numpy())
        row["lmd"] = landmarks.add(pred_u8, gt_u8)
        for key, image in (("render", pred_u8), ("gt", gt_u8)):
            openings[key].append(mesh.opening_of(image))
        row["mouth_opening"], row["mouth_opening_gt"] = openings["render"][-1], openings["gt"][-1]
        if isinstance(sync_inputs, SyncInputs):
            crops["render"].append(crop_face(pred_u8, sync_inputs.boxes[i]))
            crops["gt"].append(crop_face(gt_u8, sync_inputs.boxes[i]))
        if i in strip_at:
            strip.append({"frame_index": int(frame_indices[i]), "gt": gt_u8, "render": pred_u8})
        per_frame.append(row)
        if on_frame is not None:
            on_frame()

    metrics: Dict[str, Dict[str, Any]] = {}
    for name in ("psnr", "ssim", "l1"):
        metrics[name] = {
            "available": True,
            "frame": _mean([r[name] for r in per_frame]),
            "face": _mean([r[f"{name}_face"] for r in per_frame]),
        }
    if isinstance(lpips_metric, LPIPSMetric):
        metrics["lpips"] = {
            "available": True,
            "frame": _mean([r["lpips"] for r in per_frame]),
            "face": _mean([r["lpips_face"] for r in per_frame]),
        }
    else:
        metrics["lpips"] = unavailable(lpips_metric)
    if on_stage is not None:
        on_stage("FID")
    if not isinstance(fid_metric, FIDMetric):
        metrics["fid"] = unavailable(fid_metric)
    elif num < 2:
        metrics["fid"] = unavailable(f"FID needs at least 2 test frames, there is {num}")
    else:
        metrics["fid"] = {
            "available": True,
            "frame": fid_from_features(np.stack(features["render"]), np.stack(features["gt"])),
            "face": fid_from_features(np.stack(features["render_face"]), np.stack(features["gt_face"])),
            "frames": num,
        }
    metrics["lmd"] = landmarks.summary()
    if on_stage is not None:
        on_stage("SyncNet")
    metrics["sync"] = _sync_metric(syncnet, sync_inputs, crops, fps)
    if on_stage is not None:
        on_stage("lip sync")
    metrics["lip_sync"] = _lip_sync_metric(dataset, frame_indices, fps, openings)
    mesh.close()

    info = {
        "split": "test",
        "frames": num,
        "resolution": [int(dataset.cameras.width[0, 0]), int(dataset.cameras.height[0, 0])],
        "device": str(device),
        "render_fps": num / render_seconds if render_seconds > 0 else float("nan"),
        "dataset": str(dataset.metadata.get("data_dir", "")),
        # The method's paper and its own row, for the report's comparison line.
        "paper": dict(zip(("name", "row"), getattr(model, "paper", ("", {})))),
    }
    return EvalResult(metrics=metrics, per_frame=per_frame, info=info, strip=strip)


def _sync_metric(
    syncnet: Union[SyncNetS, str], sync_inputs: Union[SyncInputs, str], crops: Dict[str, List[np.ndarray]], fps: float
) -> Dict[str, Any]:
    """SyncNet confidence of the renders and of the ground truth (the tables' "Ground Truth" row)."""
    if not isinstance(sync_inputs, SyncInputs):
        return unavailable(sync_inputs)
    assert isinstance(syncnet, SyncNetS)
    shown = sync_inputs.order[frames_at_25fps(len(sync_inputs.order), fps)]  # dataset indices, time order, 25 fps
    result: Dict[str, Any] = {"available": True, "frames": len(shown)}
    for key, name in (("render", "render"), ("gt", "ground_truth")):
        try:
            result[name] = sync_confidence(syncnet, np.stack([crops[key][i] for i in shown]), sync_inputs.audio)
        except ValueError as err:
            return unavailable(str(err))
    return result
