"""Dataparser ``talking-head-data`` (alias ``dtnerf-data``): reads a dataset written by ``dtnerf-process`` (layout:
data_processing/dataset_layout.py) for every method of this package.

Cameras carry ``times`` (``dataset_layout.frame_time``): the models map a ray's time back to its frame
(``dataset_layout.frame_of_time``) to look up the frame's conditioning. Per-frame arrays of all N frames (audio windows,
blink, expression coefficients, head pose) travel in ``DataparserOutputs.metadata`` (never through the pixel sampler);
per-pixel maps (head-less image, region masks, semantic labels) travel as per-image file lists, read by
:class:`~dtnerf_ns.core.data.talking_head_dataset.TalkingHeadDataset`.

The dataset is checked before anything trains; a problem raises :class:`TalkingHeadDatasetError` whose message is one
line naming the offending file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from data_processing import dataset_layout as layout


class TalkingHeadDatasetError(Exception):
    """The directory is not a usable talking-head dataset; the message is one line naming the file."""


@dataclass
class TalkingHeadDataParserConfig(DataParserConfig):
    """Reads a talking-portrait dataset written by ``dtnerf-process``."""

    _target: Type = field(default_factory=lambda: TalkingHeadDataParser)
    """Target class to instantiate."""
    data: Path = Path("data/dtnerf/portrait")
    """Dataset directory (the output of ``dtnerf-process``)."""
    downscale_factor: float = 1.0
    """Divide image resolution by this (images, masks and headless images are resized when loaded)."""
    aabb: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = ((-1.5, -1.9, -1.5), (1.5, 1.5, 1.5))
    """Scene box (min, max) in world units (face width = 1, head at the origin); y extends down to cover the neck."""
    check_files: bool = True
    """Check that every frame's image and required maps exist before training."""
    required_maps: Tuple[str, ...] = ("headless", "face", "mouth")
    """Per-pixel maps the method trains on (set from the datamanager's ``pixel_maps``): "headless", "background" (the
    static background behind each ray), "semantics" or a mask kind (face, mouth, eyes, person, torso). Only these are
    checked and read."""


PIXEL_MAP_KINDS = ("headless", "background", "semantics", *layout.MASK_KINDS)
"""Per-pixel maps a method may train on."""


def pixel_map_path(root: Path, kind: str, index: int) -> Path:
    """The file of one frame's per-pixel map (see :data:`PIXEL_MAP_KINDS`)."""
    if kind == "headless":
        return layout.headless_path(root, index)
    if kind == "semantics":
        return layout.semantics_path(root, index)
    return layout.mask_path(root, kind, index)


def head_pose_from_camera(camera_to_world: Float[np.ndarray, "n 4 4"]) -> Float[np.ndarray, "n 6"]:
    """Head pose in the camera frame as 6 numbers (axis-angle rotation, translation): the inverse of each camera-to-world
    matrix (the dataset keeps the head fixed and moves the camera). SAHS-NeRF conditions its deformation on it."""
    from scipy.spatial.transform import Rotation  # noqa: PLC0415

    rotation = np.transpose(camera_to_world[:, :3, :3], (0, 2, 1))  # R^T
    translation = -np.einsum("nij,nj->ni", rotation, camera_to_world[:, :3, 3])
    rotvec = Rotation.from_matrix(rotation.astype(np.float64)).as_rotvec()
    return np.concatenate([rotvec, translation], axis=1).astype(np.float32)


def _fail(path: Path, problem: str) -> TalkingHeadDatasetError:
    return TalkingHeadDatasetError(f"{path}: {problem}")


def _load_array(path: Path, expected: Tuple[Optional[int], ...], what: str) -> np.ndarray:
    """Loads a .npy file and checks its shape (None = any size); raises TalkingHeadDatasetError naming the file."""
    if not path.is_file():
        raise _fail(path, f"missing ({what})")
    try:
        array = np.load(path)
    except (OSError, ValueError) as err:
        raise _fail(path, f"unreadable ({what}): {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    shape_ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not shape_ok:
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise _fail(path, f"{what} has shape {list(array.shape)}, expected {want} (one per frame)")
    return array.astype(np.float32)


@dataclass
class TalkingHeadDataParser(DataParser):
    """Talking-head dataparser (see module docstring)."""

    config: TalkingHeadDataParserConfig
    includes_time: bool = True  # enables the viewer's time slider (time -> frame)

    def __init__(self, config: TalkingHeadDataParserConfig):
        super().__init__(config=config)
        self.downscale_factor = config.downscale_factor  # VanillaDataManager sets this to 1 in inference mode

    # ------------------------------------------------------------------ validation
    def _read_transforms(self, root: Path) -> dict:
        if not root.is_dir():
            raise _fail(root, "not a directory (expected a dataset written by dtnerf-process)")
        if not layout.is_dataset(root):
            raise _fail(
                root / layout.REPORT,
                f"missing or not a '{layout.DATASET_FORMAT}' report: {root} is not a processed dataset "
                "(make one with dtnerf-process)",
            )
        path = root / layout.TRANSFORMS
        if not path.is_file():
            raise _fail(path, "missing")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise _fail(path, f"unreadable JSON ({str(err).splitlines()[0]})")
        for key in ("frames", "fl_x", "fl_y", "cx", "cy", "w", "h", "dtnerf"):
            if key not in meta:
                raise _fail(path, f"has no '{key}' entry")
        return meta

    # ------------------------------------------------------------------ parsing
    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:
        root = Path(self.config.data)
        meta = self._read_transforms(root)
        transforms_path = root / layout.TRANSFORMS
        info = meta["dtnerf"]
        frames = meta["frames"]
        num_frames = int(info.get("num_frames", len(frames)))
        if len(frames) != num_frames:
            raise _fail(transforms_path, f"lists {len(frames)} frames but dtnerf.num_frames is {num_frames}")

        # Per-frame arrays (all N frames, indexed by frame index).
        audio = _load_array(
            root / info.get("audio_features", layout.AUDIO_FEATURES), (num_frames, None, None), "audio windows"
        )
        blink = _load_array(root / info.get("blink", layout.BLINK), (num_frames,), "blink")
        expression = _load_array(root / info.get("expression", layout.EXPRESSION), (num_frames, None), "expression")

        mouth_aabb = np.asarray(info.get("mouth_aabb", []), dtype=np.float32)
        if mouth_aabb.shape != (2, 3) or not (mouth_aabb[1] > mouth_aabb[0]).all():
            raise _fail(transforms_path, f"dtnerf.mouth_aabb must be [[min x,y,z], [max x,y,z]], got {info.get('mouth_aabb')}")

        by_path = {}
        for i, frame in enumerate(frames):
            try:
                by_path[str(frame["file_path"])] = frame
                int(frame["frame_index"])
                float(frame["time"])
                np.asarray(frame["transform_matrix"], dtype=np.float32).reshape(4, 4)
            except (KeyError, TypeError, ValueError):
                raise _fail(transforms_path, f"frames[{i}] lacks a valid file_path / frame_index / time / transform_matrix")

        key = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}.get(split)
        if key is None:
            raise ValueError(f"unknown split {split!r}")
        names = meta.get(key)
        if names is None and split == "val":
            names = meta.get("test_filenames")
        if not names:
            raise _fail(transforms_path, f"has no (or an empty) '{key}' list")

        unknown = [m for m in self.config.required_maps if m not in PIXEL_MAP_KINDS]
        if unknown:
            raise ValueError(f"unknown pixel maps {unknown}; choose from {list(PIXEL_MAP_KINDS)}")
        # A head-less image is the frame's torso over the static background (data_processing.masks.headless_image):
        # the torso mask and background.png rebuild it, so the cache needs no second RGB image per frame.
        required = self.config.required_maps
        kinds = tuple(dict.fromkeys(required + (("torso",) if "headless" in required else ())))
        kinds = tuple(kind for kind in kinds if kind != "background")  # one image for all frames, not a per-frame map
        background = root / layout.BACKGROUND
        uses_background = "headless" in required or "background" in required
        if uses_background and self.config.check_files and not background.is_file():
            raise _fail(background, "missing (needed for the head-less frames or the backdrop)")
        image_filenames: List[Path] = []
        map_files: Dict[str, List[Path]] = {kind: [] for kind in kinds}
        poses, times, frame_indices = [], [], []
        for name in names:
            frame = by_path.get(str(name))
            if frame is None:
                raise _fail(transforms_path, f"'{key}' names {name}, which is not among frames[]")
            idx = int(frame["frame_index"])
            if not 0 <= idx < num_frames:
                raise _fail(transforms_path, f"frame_index {idx} of {name} is outside [0, {num_frames})")
            image = root / str(frame["file_path"])
            maps = {kind: pixel_map_path(root, kind, idx) for kind in kinds}
            if self.config.check_files:
                for f in (image, *maps.values()):
                    if not f.is_file():
                        raise _fail(f, f"missing (needed for frame {idx})")
            image_filenames.append(image)
            for kind, path in maps.items():
                map_files[kind].append(path)
            poses.append(np.asarray(frame["transform_matrix"], dtype=np.float32).reshape(4, 4))
            times.append(float(frame["time"]))
            frame_indices.append(idx)

        poses_t = torch.from_numpy(np.stack(poses)[:, :3])
        cameras = Cameras(
            camera_to_worlds=poses_t,
            fx=float(meta["fl_x"]),
            fy=float(meta["fl_y"]),
            cx=float(meta["cx"]),
            cy=float(meta["cy"]),
            width=int(meta["w"]),
            height=int(meta["h"]),
            camera_type=CameraType.PERSPECTIVE,  # dtnerf-process writes OPENCV with zero distortion
            times=torch.tensor(times, dtype=torch.float32)[:, None],
        )
        if self.downscale_factor != 1.0:
            cameras.rescale_output_resolution(scaling_factor=1.0 / float(self.downscale_factor))

        all_poses = np.zeros((num_frames, 4, 4), dtype=np.float32)
        for frame in frames:
            all_poses[int(frame["frame_index"])] = np.asarray(frame["transform_matrix"], dtype=np.float32).reshape(4, 4)
        metadata: Dict = {
            "data_dir": root,
            "num_frames": num_frames,
            "fps": float(info.get("fps", 25.0)),
            "audio_features": torch.from_numpy(audio),  # [N, 16, C] per frame
            # Datasets from before the kind was recorded (version 1) used per-utterance mean/variance-normalised log-mel.
            "audio_feature_kind": str(info.get("audio_feature_kind", "logmel29-cmvn")),
            "blink": torch.from_numpy(blink),  # [N]
            "expression": torch.from_numpy(expression),  # [N, D]
            "head_pose": torch.from_numpy(head_pose_from_camera(all_poses)),  # [N, 6], all frames
            "frame_indices": torch.tensor(frame_indices, dtype=torch.long),  # per image of this split
            "mouth_aabb": torch.from_numpy(mouth_aabb),
            "pixel_map_files": map_files,  # {kind: [path per image of this split]}
            "background_file": background,
            "uses_background": uses_background,  # batches carry the static background's pixels
        }
        return DataparserOutputs(
            image_filenames=image_filenames,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor(self.config.aabb, dtype=torch.float32)),
            metadata=metadata,
        )
