"""Per-frame conditioning of a talking head: which frame a ray belongs to, and that frame's driving signals.

Frames are identified by ``times`` (``dataset_layout.frame_of_time``; at eval and in the viewer it is the only thing
that identifies a camera's frame), else by the training camera index. Each frame has an audio window (encoded by a
learned :class:`AudioEncoder`, randomly perturbed while training), an eye blink, expression coefficients and a head
pose (6 numbers). :meth:`FrameConditioning.driven_by` swaps in another sequence (new speech for ``dtnerf-render``),
whose frame ``k`` is then addressed by ``times = frame_time(k, K)`` exactly as training frames are.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Optional

import torch
from jaxtyping import Float, Int64
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor, nn

from data_processing import dataset_layout
from dtnerf_ns.core.field_components.audio_augmentation import AudioFeatureAugmentation
from dtnerf_ns.core.field_components.audio_encoder import AudioEncoder

REQUIRED_METADATA = ("audio_features", "blink", "num_frames")


class FrameConditioning(nn.Module):
    """Per-frame signals as non-persistent buffers (they follow the model's device and stay out of checkpoints).

    Args:
        metadata: the talking-head-data dataparser's metadata (all N frames' arrays).
        audio_dim: audio code size (ER-NeRF: 32).
        audio_window: neighbouring frames smoothed by the audio attention net (ER-NeRF: 8).
        audio_smoothing: smooth codes over the window with ER-NeRF's AudioAttNet.
        augmentation: training-time audio perturbation (identity in eval mode); None for none.
    """

    def __init__(
        self,
        metadata: Mapping[str, Any],
        audio_dim: int = 32,
        audio_window: int = 8,
        audio_smoothing: bool = True,
        augmentation: Optional[AudioFeatureAugmentation] = None,
    ) -> None:
        super().__init__()
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise ValueError(f"talking-head models need dataparser metadata {missing} (use the talking-head-data dataparser)")
        self.num_frames = int(metadata["num_frames"])
        audio = torch.as_tensor(metadata["audio_features"], dtype=torch.float32)
        n = self.num_frames
        self.register_buffer("audio_features", audio, persistent=False)  # [N, T, C]
        self.register_buffer("blink", torch.as_tensor(metadata["blink"], dtype=torch.float32), persistent=False)
        expression = metadata.get("expression")
        expression = torch.zeros(n, 0) if expression is None else torch.as_tensor(expression, dtype=torch.float32)
        self.register_buffer("expression", expression, persistent=False)  # [N, D]
        pose = metadata.get("head_pose")
        self.register_buffer("head_pose", torch.zeros(n, 6) if pose is None else torch.as_tensor(pose).float(), persistent=False)
        train_frames = metadata.get("frame_indices")
        train_frames = torch.arange(n) if train_frames is None else torch.as_tensor(train_frames, dtype=torch.long)
        self.register_buffer("train_frame_indices", train_frames, persistent=False)

        self.audio_augmentation = augmentation if augmentation is not None else nn.Identity()
        self.audio_encoder = AudioEncoder(
            in_channels=audio.shape[-1], audio_dim=audio_dim, window=audio_window, use_smoothing=audio_smoothing
        )
        window = audio_window if self.audio_encoder.att_net is not None else 1
        # Window of `window` frames starting window//2 before the frame (ER-NeRF's bidirectional attention window);
        # ER-NeRF pads with zeros at the clip's ends, we repeat the first / last frame.
        self.register_buffer("window_offsets", torch.arange(window) - window // 2, persistent=False)
        self.sync_free: Optional[bool] = None
        """Audio codes without host-device synchronisation (None: on CUDA only; see :meth:`audio_codes`)."""

    # ------------------------------------------------------------------ frames
    def frames_of_times(self, times: Tensor) -> Int64[Tensor, "n"]:
        return dataset_layout.frame_of_time(times.reshape(-1), self.num_frames)

    def frames_of_rays(self, ray_bundle: RayBundle) -> Int64[Tensor, "rays"]:
        """Frame index per ray (flattened): from ``times``, else (no times) from the training camera index."""
        num_rays = ray_bundle.origins.reshape(-1, 3).shape[0]
        if ray_bundle.times is not None:
            frames = self.frames_of_times(ray_bundle.times)
        else:
            assert ray_bundle.camera_indices is not None, "rays need times or camera_indices to find their frame"
            frames = self.train_frame_indices[ray_bundle.camera_indices.reshape(-1).long()]
        return frames.expand(num_rays) if frames.numel() == 1 and num_rays > 1 else frames

    # ------------------------------------------------------------------ signals
    def audio_codes(self, frames: Int64[Tensor, "n"]) -> Float[Tensor, "n audio_dim"]:
        """Audio code of each frame (AudioNet on every frame of its window, then AudioAttNet).

        On the CPU each distinct frame is encoded once (``torch.unique``). On a GPU that would synchronise the host
        every step (its output size depends on the data), so there AudioNet runs on all N frames (a few thousand
        tiny convolutions, small next to the field) and AudioAttNet on every ray's window: fixed shapes, no sync.
        """
        sync_free = frames.is_cuda if self.sync_free is None else self.sync_free
        if sync_free:
            per_frame = self.audio_encoder.audio_net(self.audio_augmentation(self.audio_features))  # [N, A]
            return self._smooth(per_frame[self._windows(frames)])
        unique, inverse = torch.unique(frames, return_inverse=True)
        needed, where = torch.unique(self._windows(unique), return_inverse=True)
        # AudioNet once per distinct frame of all windows (windows overlap), then AudioAttNet per distinct target frame.
        per_frame = self.audio_encoder.audio_net(self.audio_augmentation(self.audio_features[needed]))  # [F, A]
        return self._smooth(per_frame[where])[inverse]

    def _windows(self, frames: Tensor) -> Tensor:
        return (frames[:, None] + self.window_offsets[None]).clamp(0, self.num_frames - 1)  # [n, W]

    def _smooth(self, codes: Float[Tensor, "n window audio_dim"]) -> Float[Tensor, "n audio_dim"]:
        if self.audio_encoder.att_net is not None and codes.shape[1] > 1:
            return self.audio_encoder.att_net(codes)
        return codes[:, codes.shape[1] // 2]

    # ------------------------------------------------------------------ new driving signals
    @contextlib.contextmanager
    def driven_by(
        self,
        audio_features: Optional[Float[Tensor, "frames window channels"]] = None,
        source_frames: Optional[Int64[Tensor, "frames"]] = None,
        blink: Optional[Float[Tensor, "frames"]] = None,
        expression: Optional[Float[Tensor, "frames dims"]] = None,
        head_pose: Optional[Float[Tensor, "frames 6"]] = None,
    ) -> Iterator[None]:
        """Temporarily drive the model with another K-frame sequence.

        Signals not given come from ``source_frames`` (K training-frame indices: the frames whose pose, blink and
        expression the new sequence replays); without those either, from frames ``0..K-1``.
        """
        given = [s for s in (audio_features, source_frames, blink, expression, head_pose) if s is not None]
        if not given:
            raise ValueError("driven_by needs at least one signal")
        num = int(given[0].shape[0])
        if any(int(s.shape[0]) != num for s in given):
            raise ValueError(f"driving signals of different lengths: {[int(s.shape[0]) for s in given]}")
        if audio_features is not None and audio_features.shape[1:] != self.audio_features.shape[1:]:
            raise ValueError(
                f"audio windows {tuple(audio_features.shape[1:])} do not match the model's {tuple(self.audio_features.shape[1:])}"
            )
        source = source_frames if source_frames is not None else torch.arange(num).clamp(max=self.num_frames - 1)
        source = torch.as_tensor(source, dtype=torch.long, device=self.blink.device)
        names = ("audio_features", "blink", "expression", "head_pose")
        saved = {name: getattr(self, name) for name in names}, self.num_frames
        new = {"audio_features": audio_features, "blink": blink, "expression": expression, "head_pose": head_pose}
        try:
            for name in names:
                value = new[name] if new[name] is not None else saved[0][name][source]
                setattr(self, name, torch.as_tensor(value).to(self.blink.device, torch.float32))
            self.num_frames = num
            yield
        finally:
            for name, value in saved[0].items():
                setattr(self, name, value)
            self.num_frames = saved[1]

