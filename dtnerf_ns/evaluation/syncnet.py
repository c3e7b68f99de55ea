"""SyncNet confidence (Chung & Zisserman 2016, "Out of time"), computed as syncnet_python (joonson/syncnet_python)
computes it, the "Sync" column of the SAHS-NeRF tables.

* Network: syncnet_python's ``S`` (``SyncNetModel.py``), layer for layer and with its parameter names, so its released
  ``syncnet_v2.model`` loads unchanged (``--syncnet-weights``).
* Video: 25 fps; per frame a 224x224 crop around the face, placed as syncnet_python's ``crop_video`` places it (crop
  scale 0.4 around the face box, borders padded with grey 110, BGR 0..255), the face box median-filtered over 13
  frames. The face box is the bounding box of the frame's ground-truth face mask (syncnet_python detects faces with
  S3FD, which we do not have); the render and its ground truth are cropped identically. Edges of the box track are
  filtered with repeated end values (syncnet_python's medfilt zero-pads, which breaks on short test sets).
* Audio: 13 MFCCs at 100 Hz (python_speech_features' defaults, on 16-bit sample values), 20 steps (0.2 s) per
  5-frame video window.
* Offset search: distances between every video window's embedding and the audio embeddings shifted by -15..+15 frames,
  averaged over the windows; AV offset = 15 - argmin, confidence = median - min of that curve.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from scipy.ndimage import median_filter
from torch import Tensor, nn

from dtnerf_ns.evaluation.weights import WeightsUnavailable, find_weights, load_state_dict

SYNCNET_FILE = "syncnet_v2.model"
WHAT = "SyncNet weights"
FPS = 25
"""SyncNet's video rate."""
SAMPLE_RATE = 16000
VSHIFT = 15
"""Offsets searched, in frames either way (syncnet_python's default)."""
CROP_SIZE = 224
CROP_SCALE = 0.4
BOX_SMOOTHING = 13
"""Median filter length over the face boxes (frames)."""
WINDOW = 5
"""Video frames per SyncNet window (0.2 s)."""
MFCC_PER_FRAME = 4
"""100 Hz MFCC steps per 25 fps frame."""


class SyncNetS(nn.Module):
    """syncnet_python's ``S``: a 3-D conv lip tower over 5 face crops and a 2-D conv audio tower over 20 MFCC steps,
    each ending in a ``num_layers_in_fc_layers``-d embedding."""

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers)
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers)
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: Float[Tensor, "B 1 13 20"]) -> Float[Tensor, "B E"]:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: Float[Tensor, "B 3 5 224 224"]) -> Float[Tensor, "B E"]:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(weights: Optional[Path], device: torch.device) -> SyncNetS:
    """SyncNet with syncnet_python's weights (given file, else ``syncnet_v2.model`` in the torch hub cache).

    Like syncnet_python's ``loadParameters`` every tensor of the file must match a parameter; BatchNorm's
    ``num_batches_tracked`` counters (newer than the released file) may be absent. Raises WeightsUnavailable.
    """
    path = find_weights(weights, [SYNCNET_FILE], WHAT, "--syncnet-weights")
    state = load_state_dict(path, WHAT)
    net = SyncNetS()
    own = net.state_dict()
    unexpected = [k for k in state if k not in own or own[k].shape != state[k].shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        raise WeightsUnavailable(
            f"{WHAT}: {path} does not fit the network ({len(unexpected)} unexpected / mismatched tensors, e.g. "
            f"{(unexpected or ['-'])[0]}; {len(missing)} missing, e.g. {(missing or ['-'])[0]})"
        )
    net.load_state_dict(state, strict=False)
    return net.to(device).eval()


# ---------------------------------------------------------------------------------------------- video and audio input
def face_boxes(masks: List[Bool[np.ndarray, "H W"]]) -> Float[np.ndarray, "T 3"]:
    """Per frame (centre x, centre y, half size) of the face mask's bounding box, median-filtered over 13 frames.

    Frames with an empty mask take the box interpolated from their neighbours. Raises ValueError when all are empty.
    """
    boxes = np.full((len(masks), 3), np.nan)
    for t, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            boxes[t] = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2)
    valid = ~np.isnan(boxes[:, 0])
    if not valid.any():
        raise ValueError("no ground-truth face mask to place the SyncNet crops")
    frames = np.arange(len(masks))
    for k in range(3):
        boxes[:, k] = np.interp(frames, frames[valid], boxes[valid, k])
    return median_filter(boxes, size=(BOX_SMOOTHING, 1), mode="nearest")


def crop_face(image_rgb: UInt8[np.ndarray, "H W 3"], box: Float[np.ndarray, "3"]) -> UInt8[np.ndarray, "224 224 3"]:
    """syncnet_python's crop around a face box (centre x, centre y, half size ``s``): from the box's top to ``0.8 s``
    below its bottom, ``1.4 s`` either side of its centre, grey padding outside the frame; BGR, 224x224."""
    cx, cy, bs = (float(v) for v in box)
    pad = int(bs * (1 + 2 * CROP_SCALE))
    frame = np.pad(image_rgb[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=110)
    my, mx = cy + pad, cx + pad
    half_width = bs * (1 + CROP_SCALE)
    face = frame[int(my - bs) : int(my + bs * (1 + 2 * CROP_SCALE)), int(mx - half_width) : int(mx + half_width)]
    return cv2.resize(np.ascontiguousarray(face), (CROP_SIZE, CROP_SIZE))


def frames_at_25fps(num_frames: int, fps: float) -> np.ndarray:
    """Indices of the frames shown at 25 fps (nearest in time), for clips recorded at another rate."""
    count = int(math.floor(num_frames * FPS / fps + 1e-6))
    return np.clip(np.round(np.arange(count) * fps / FPS).astype(np.int64), 0, num_frames - 1)


def mfcc(audio: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "13 steps"]:
    """syncnet_python's audio input: MFCCs of the 16 kHz signal given as 16-bit sample values (as it reads them from
    a wav file; :func:`data_processing.audio.load_audio` divides them by 32768)."""
    import python_speech_features  # noqa: PLC0415

    samples = np.clip(np.round(audio * 32768.0), -32768, 32767)
    return python_speech_features.mfcc(samples, SAMPLE_RATE).T


# ---------------------------------------------------------------------------------------------- offset and confidence
def calc_pdist(video: Float[Tensor, "N E"], audio: Float[Tensor, "N E"], vshift: int = VSHIFT) -> Float[Tensor, "N W"]:
    """Distance of each video embedding to the audio embeddings ``-vshift..+vshift`` windows away (zero-padded)."""
    win = 2 * vshift + 1
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    distance = torch.nn.functional.pairwise_distance
    return torch.stack([distance(video[[i]].repeat(win, 1), padded[i : i + win]) for i in range(len(video))])


def offset_and_confidence(dists: Float[Tensor, "N W"], vshift: int = VSHIFT) -> Tuple[int, float, float]:
    """(AV offset in frames, confidence, min distance) of the mean distance curve: offset = vshift - argmin,
    confidence = median - min (``torch.median``: the lower median, as syncnet_python)."""
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, dim=0)
    return vshift - int(minidx), float(torch.median(mdist) - minval), float(minval)


@torch.no_grad()
def sync_confidence(
    net: SyncNetS,
    crops_bgr: UInt8[np.ndarray, "T 224 224 3"],
    audio: Float[np.ndarray, "samples"],
    batch_size: int = 20,
) -> Dict[str, float]:
    """syncnet_python's ``evaluate`` on 25 fps face crops and the matching 16 kHz audio (see module docstring)."""
    device = next(net.parameters()).device
    cc = torch.from_numpy(mfcc(audio)).float()[None, None]  # [1, 1, 13, steps]
    min_length = min(len(crops_bgr), len(audio) // (SAMPLE_RATE // FPS))
    last = min_length - WINDOW
    if last < 1:
        raise ValueError(f"SyncNet needs at least {WINDOW + 1} frames at {FPS} fps, the test set has {min_length}")
    video = torch.from_numpy(np.ascontiguousarray(crops_bgr)).permute(3, 0, 1, 2).float()[None]  # [1, 3, T, 224, 224]
    im_feat, cc_feat = [], []
    for i in range(0, last, batch_size):
        starts = range(i, min(last, i + batch_size))
        im_in = torch.cat([video[:, :, s : s + WINDOW] for s in starts]).to(device)
        cc_in = torch.cat([cc[..., s * MFCC_PER_FRAME : s * MFCC_PER_FRAME + 20] for s in starts]).to(device)
        im_feat.append(net.forward_lip(im_in).cpu())
        cc_feat.append(net.forward_aud(cc_in).cpu())
    offset, confidence, min_dist = offset_and_confidence(calc_pdist(torch.cat(im_feat), torch.cat(cc_feat)))
    return {"confidence": confidence, "av_offset": offset, "min_dist": min_dist, "windows": last}
