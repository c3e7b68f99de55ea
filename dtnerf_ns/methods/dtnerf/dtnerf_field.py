"""DT-NeRF field: decomposed face and mouth triplane-hash fields, audio-aligned by a transformer, fused in space.

Per-ray conditioning is read from ``ray_samples.metadata`` (the model computes it once per ray):

* ``"audio"``: audio code, [..., S or 1, audio_dim] (needed by get_density: density depends on audio);
* ``"blink"``: eye-blink scalar, [..., S or 1, 1] (needed by get_outputs when ``use_blink``, and by get_density when
  ``use_eye_gate``).

(nerfstudio's ``RayBundle.get_ray_samples`` turns per-ray metadata [R, C] into [R, 1, C] and broadcasts it to
[R, S, C]; per-ray [R, C] given directly on samples of shape [R, S] is accepted too.)
"""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple, Union

import torch
from jaxtyping import Bool, Float
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import SHEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field, get_normalized_directions
from torch import Tensor

from dtnerf_ns.methods.dtnerf.field_components.dtnerf_sub_field import DTNeRFSubField
from dtnerf_ns.methods.dtnerf.field_components.spatial_fusion import spatial_fusion

# Extra output keys (string keys next to FieldHeadNames.RGB / DENSITY).
DENSITY_FACE = "density_face"
DENSITY_MOUTH = "density_mouth"
RGB_FACE = "rgb_face"
RGB_MOUTH = "rgb_mouth"
AUDIO_GATE = "audio_gate"
"""Face field's mean audio gate per sample (0..1; 0 with the gate off)."""
EYE_GATE = "eye_gate"
"""Face field's eye (blink) gate per sample (0..1; 0 with the gate off)."""


def _per_sample(value: Tensor, batch_shape: torch.Size, name: str) -> Tensor:
    """Broadcasts per-ray conditioning [..., S or 1, C] (or [..., C] for samples [..., S]) to batch_shape + [C]."""
    if value.dim() == len(batch_shape):  # per-ray tensor without the sample axis
        value = value.unsqueeze(-2)
    try:
        return value.expand(*batch_shape, value.shape[-1])
    except RuntimeError as err:
        raise ValueError(
            f"ray_samples.metadata['{name}'] has shape {tuple(value.shape)}, "
            f"which does not broadcast to samples {tuple(batch_shape)}"
        ) from err


class DTNeRFField(Field):
    """Decomposed face + mouth audio-driven field with spatial fusion (DT-NeRF).

    Both sub-fields are ``TriplaneHashEncoding -> AudioMouthFaceAlignTransformer -> density MLP -> colour MLP``.
    The face field covers the scene box; the mouth field only exists inside ``mouth_aabb`` (its triplanes span
    that box, so its grids spend their resolution on the mouth) and has density exactly 0 outside it.
    ``sigma = sigma_face + sigma_mouth``, ``c = (sigma_face c_face + sigma_mouth c_mouth) / sigma``.

    ``get_density`` returns the fused density and an embedding that packs
    ``[density_face (1), density_mouth (1), audio gate (1), eye gate (1), face embedding, mouth embedding]`` for
    ``get_outputs``. The gates are the face field's (the mouth box is all speaking region: its audio is not gated).

    Args:
        aabb: scene box [2, 3] (min, max) in world coordinates.
        mouth_aabb: mouth box [2, 3] in the same coordinates.
        audio_dim: size of ``metadata["audio"]``.
        num_levels: hash-grid levels per plane (both sub-fields).
        features_per_level: features per hash-grid level.
        face_log2_hashmap_size: log2 hash table size of the face planes.
        mouth_log2_hashmap_size: log2 hash table size of the mouth planes.
        face_base_res: coarsest face grid resolution.
        face_max_res: finest face grid resolution (over the scene box).
        mouth_base_res: coarsest mouth grid resolution.
        mouth_max_res: finest mouth grid resolution (over the mouth box).
        hidden_dim: density MLP width.
        num_layers: density MLP linear layers (ER-NeRF: 3).
        geo_feat_dim: geometry feature size (ER-NeRF: 64).
        hidden_dim_color: colour MLP width.
        num_layers_color: colour MLP linear layers (ER-NeRF: 2).
        transformer_out_dim: transformer conditioning vector size.
        transformer_dim: attention width.
        num_heads: attention heads.
        transformer_pe_frequencies: frequencies of the key positional encoding.
        sh_levels: spherical-harmonics levels of the view-direction encoding.
        use_blink: condition the face colour on ``metadata["blink"]`` (the mouth never uses it).
        use_audio_gate: gate the face field's audio conditioning per position (ER-NeRF).
        use_eye_gate: feed the blink, gated per position, to the face field's density (ER-NeRF).
        transformer_recompute: recompute the transformer in backward instead of keeping its activations (~0.4 GB
            at 4096 rays x 48 samples, a third of a step's; costs ~5% of a step): "cpu" when training on the CPU,
            where host memory is the limit, "always", or "never".
        implementation: "tcnn" (when importable, else torch with a warning) or "torch".
    """

    aabb: Tensor
    mouth_aabb: Tensor

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        mouth_aabb: Float[Tensor, "2 3"],
        audio_dim: int = 32,
        num_levels: int = 16,
        features_per_level: int = 2,
        face_log2_hashmap_size: int = 19,
        mouth_log2_hashmap_size: int = 17,
        face_base_res: int = 16,
        face_max_res: int = 1024,
        mouth_base_res: int = 16,
        mouth_max_res: int = 512,
        hidden_dim: int = 64,
        num_layers: int = 3,
        geo_feat_dim: int = 64,
        hidden_dim_color: int = 64,
        num_layers_color: int = 2,
        transformer_out_dim: int = 32,
        transformer_dim: int = 64,
        num_heads: int = 4,
        transformer_pe_frequencies: int = 4,
        sh_levels: int = 4,
        use_blink: bool = True,
        use_audio_gate: bool = True,
        use_eye_gate: bool = True,
        transformer_recompute: Literal["cpu", "always", "never"] = "cpu",
        implementation: Literal["tcnn", "torch"] = "tcnn",
    ) -> None:
        super().__init__()
        mouth_aabb = torch.as_tensor(mouth_aabb, dtype=torch.float32)
        if mouth_aabb.shape != (2, 3) or not bool((mouth_aabb[1] > mouth_aabb[0]).all()):
            raise ValueError(f"mouth_aabb must be [2, 3] with min < max, got {mouth_aabb.tolist()}")
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))
        self.register_buffer("mouth_aabb", mouth_aabb)
        self.audio_dim = audio_dim
        self.use_blink = use_blink
        self.use_eye_gate = use_eye_gate

        self.direction_encoding = SHEncoding(levels=sh_levels, implementation=implementation)
        common = dict(
            audio_dim=audio_dim,
            num_levels=num_levels,
            features_per_level=features_per_level,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            geo_feat_dim=geo_feat_dim,
            hidden_dim_color=hidden_dim_color,
            num_layers_color=num_layers_color,
            transformer_out_dim=transformer_out_dim,
            transformer_dim=transformer_dim,
            num_heads=num_heads,
            transformer_pe_frequencies=transformer_pe_frequencies,
            direction_dim=self.direction_encoding.get_out_dim(),
            transformer_recompute=transformer_recompute,
            implementation=implementation,
        )
        # ER-NeRF conditions the face on eye blinks; the mouth box does not contain the eyes.
        self.face = DTNeRFSubField(
            log2_hashmap_size=face_log2_hashmap_size,
            base_res=face_base_res,
            max_res=face_max_res,
            use_blink=use_blink,
            use_audio_gate=use_audio_gate,
            use_eye_gate=use_eye_gate,
            **common,  # type: ignore[arg-type]
        )
        self.mouth = DTNeRFSubField(
            log2_hashmap_size=mouth_log2_hashmap_size,
            base_res=mouth_base_res,
            max_res=mouth_max_res,
            use_blink=False,
            use_audio_gate=False,
            use_eye_gate=False,
            **common,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ helpers
    def in_mouth_box(self, positions: Float[Tensor, "*bs 3"]) -> Bool[Tensor, "*bs"]:
        """Whether world positions lie inside the (closed) mouth box."""
        return ((positions >= self.mouth_aabb[0]) & (positions <= self.mouth_aabb[1])).all(dim=-1)

    def _audio(self, ray_samples: RaySamples, batch_shape: torch.Size) -> Tensor:
        metadata = ray_samples.metadata or {}
        if "audio" not in metadata:
            raise KeyError(
                "DTNeRFField needs ray_samples.metadata['audio'] ([..., S or 1, audio_dim]); "
                "for density-only queries without rays use density_fn(positions, audio=...)."
            )
        audio = _per_sample(metadata["audio"], batch_shape, "audio")
        if audio.shape[-1] != self.audio_dim:
            raise ValueError(f"metadata['audio'] has {audio.shape[-1]} channels, expected {self.audio_dim}")
        return audio

    def _direction_encoding(self, directions: Float[Tensor, "N 3"]) -> Float[Tensor, "N Dd"]:
        # tcnn's SH expects directions mapped to [0, 1]; nerfstudio's torch SH expects unit vectors.
        if self.direction_encoding.tcnn_encoding is not None:
            return self.direction_encoding(get_normalized_directions(directions)).float()
        return self.direction_encoding(directions)

    # ------------------------------------------------------------------ Field API
    def get_density(self, ray_samples: RaySamples) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs E"]]:
        """Fused density and the packed embedding (see class docstring). Reads metadata['audio']."""
        positions = ray_samples.frustums.get_positions()
        batch_shape = positions.shape[:-1]
        pos = positions.reshape(-1, 3)
        audio = self._audio(ray_samples, batch_shape).reshape(-1, self.audio_dim)
        n = pos.shape[0]

        # Face: scene box -> [-1, 1] (nerfacto's normalisation); zero density outside the box, like nerfacto.
        x_face = SceneBox.get_normalized_positions(pos, self.aabb) * 2.0 - 1.0
        in_scene = ((x_face > -1.0) & (x_face < 1.0)).all(dim=-1, keepdim=True)
        blink = None
        if self.use_eye_gate:
            metadata = ray_samples.metadata or {}
            if "blink" in metadata:
                blink = _per_sample(metadata["blink"], batch_shape, "blink").reshape(-1, 1)
            else:  # density-only queries (occupancy grid): eyes open
                blink = pos.new_zeros(n, 1)
        density_face, emb_face, gates = self.face.density(x_face, audio, blink)
        density_face = torch.where(in_scene, density_face, torch.zeros_like(density_face))

        # Mouth: evaluated only on samples inside its box (few of them), scattered back; exactly 0 elsewhere. On CUDA
        # the nonzero is one host sync per call: kept, since evaluating the mouth field on every sample instead
        # (fixed shapes) would nearly double the field's cost to save a sync of a few microseconds.
        density_mouth = density_face.new_zeros(n, 1)
        emb_mouth = emb_face.new_zeros(n, self.mouth.embedding_dim)
        idx = torch.nonzero(self.in_mouth_box(pos), as_tuple=False).squeeze(-1)
        if idx.numel() > 0:
            x_mouth = SceneBox.get_normalized_positions(pos[idx], self.mouth_aabb) * 2.0 - 1.0
            d_m, e_m, _ = self.mouth.density(x_mouth, audio[idx])
            density_mouth = density_mouth.index_copy(0, idx, d_m)
            emb_mouth = emb_mouth.index_copy(0, idx, e_m)

        density = density_face + density_mouth
        embedding = torch.cat([density_face, density_mouth, gates, emb_face, emb_mouth], dim=-1)
        return density.view(*batch_shape, 1), embedding.view(*batch_shape, -1)

    def get_outputs(
        self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None
    ) -> Dict[Union[FieldHeadNames, str], Tensor]:
        """RGB (fused) plus "density_face", "density_mouth" ([..., 1]) and "rgb_face", "rgb_mouth" ([..., 3]).

        ``rgb_mouth`` is 0 outside the mouth box (where its density is 0). Reads metadata['blink'] if use_blink.
        """
        assert density_embedding is not None, "get_outputs needs the embedding returned by get_density"
        batch_shape = ray_samples.frustums.directions.shape[:-1]
        emb = density_embedding.reshape(-1, density_embedding.shape[-1])
        density_face, density_mouth, gates, emb_face, emb_mouth = torch.split(
            emb, [1, 1, 2, self.face.embedding_dim, self.mouth.embedding_dim], dim=-1
        )
        d_enc = self._direction_encoding(ray_samples.frustums.directions.reshape(-1, 3))

        blink = None
        if self.use_blink:
            metadata = ray_samples.metadata or {}
            if "blink" not in metadata:
                raise KeyError("DTNeRFField(use_blink=True) needs ray_samples.metadata['blink'] ([..., S or 1, 1])")
            blink = _per_sample(metadata["blink"], batch_shape, "blink").reshape(-1, 1)
        rgb_face = self.face.color(emb_face, d_enc, blink)

        rgb_mouth = rgb_face.new_zeros(rgb_face.shape)
        idx = torch.nonzero(self.in_mouth_box(ray_samples.frustums.get_positions().reshape(-1, 3))).squeeze(-1)
        if idx.numel() > 0:
            rgb_mouth = rgb_mouth.index_copy(0, idx, self.mouth.color(emb_mouth[idx], d_enc[idx]))

        _, rgb = spatial_fusion(density_face, rgb_face, density_mouth, rgb_mouth)
        return {
            FieldHeadNames.RGB: rgb.view(*batch_shape, 3),
            DENSITY_FACE: density_face.view(*batch_shape, 1),
            DENSITY_MOUTH: density_mouth.view(*batch_shape, 1),
            RGB_FACE: rgb_face.view(*batch_shape, 3),
            RGB_MOUTH: rgb_mouth.view(*batch_shape, 3),
            AUDIO_GATE: gates[:, :1].reshape(*batch_shape, 1),
            EYE_GATE: gates[:, 1:].reshape(*batch_shape, 1),
        }

    def density_fn(
        self,
        positions: Float[Tensor, "*bs 3"],
        times: Optional[Float[Tensor, "*bs 1"]] = None,
        audio: Optional[Float[Tensor, "*bs A"]] = None,
        blink: Optional[Float[Tensor, "*bs 1"]] = None,
    ) -> Float[Tensor, "*bs 1"]:
        """Fused density at positions (e.g. for occupancy-grid updates).

        Args:
            positions: world positions.
            times: unused.
            audio: audio code broadcastable to [*bs, audio_dim] (e.g. [audio_dim] or a dataset-mean code);
                defaults to a zero code.
            blink: eye blink per position (the eye gate's input); defaults to open eyes.
        """
        del times
        if audio is None:
            audio = positions.new_zeros(self.audio_dim)
        audio = audio.to(positions).expand(*positions.shape[:-1], self.audio_dim)
        ray_samples = RaySamples(
            frustums=Frustums(
                origins=positions,
                directions=torch.ones_like(positions),
                starts=torch.zeros_like(positions[..., :1]),
                ends=torch.zeros_like(positions[..., :1]),
                pixel_area=torch.ones_like(positions[..., :1]),
            ),
            metadata={"audio": audio} if blink is None else {"audio": audio, "blink": blink.to(positions)},
        )
        density, _ = self.get_density(ray_samples)
        return density
