"""The shared model interface with a method that is not DT-NeRF: final frames, backdrops, post-process, eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Type

import pytest
import torch

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig
from dtnerf_ns.core.data.talking_head_dataset import TalkingHeadDataset
from dtnerf_ns.core.talking_head_model import TalkingHeadModel, TalkingHeadModelConfig


@dataclass
class FlatHeadConfig(TalkingHeadModelConfig):
    _target: Type = field(default_factory=lambda: FlatHeadModel)


class FlatHeadModel(TalkingHeadModel):
    """A test method: a half-transparent flat "head" whose grey level is its frame's index / N."""

    def populate_modules(self):
        super().populate_modules()
        self.level = torch.nn.Parameter(torch.tensor(1.0))

    def get_param_groups(self):
        return {"fields": [self.level]}

    def get_outputs(self, ray_bundle) -> Dict[str, torch.Tensor]:
        frames = self.conditioning.frames_of_rays(ray_bundle).float()
        grey = (self.level * frames / self.num_frames)[:, None].expand(-1, 3)
        accumulation = torch.full_like(grey[:, :1], 0.5)
        return {"rgb_head": 0.5 * grey, "accumulation": accumulation, "rgb": 0.5 * grey}

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        gt, pred = self.composite_batch(outputs, batch)
        return {"rgb_loss": ((pred - gt) ** 2).mean()}


class PostProcessed(FlatHeadModel):
    calls = 0

    def post_process(self, rgb, frame):
        type(self).calls += 1
        return rgb + 0.1


@pytest.fixture(scope="module")
def split(tiny_dtnerf_dataset: Path):
    parser = TalkingHeadDataParserConfig(data=tiny_dtnerf_dataset, downscale_factor=2.0).setup()
    return parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")


def build(outputs, config=None) -> FlatHeadModel:
    config = config or FlatHeadConfig()
    return config.setup(scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata)


def expected_frame(root: Path, frame: int, num_frames: int, size) -> torch.Tensor:
    headless = torch.from_numpy(read_image(layout.headless_path(root, frame), size=size)).float() / 255
    return 0.5 * frame / num_frames + 0.5 * headless


def test_final_frame_is_the_layers_over_the_frames_backdrop(split, tiny_dtnerf_dataset: Path):
    train, _ = split
    model = build(train).eval()
    camera = train.cameras[3:4]
    frame = int(train.metadata["frame_indices"][3])
    assert model.camera_frame(camera) == frame
    outputs = model.get_outputs_for_camera(camera)  # what the viewer and ns-render show
    expected = expected_frame(tiny_dtnerf_dataset, frame, model.num_frames, (32, 32))
    torch.testing.assert_close(outputs["rgb"], expected)
    assert "rgb_raw" not in outputs  # no post-process here
    # Output size other than the camera's: layers resized, then composited over the given backdrop.
    final = model.render_final_frame(camera, backdrop=torch.ones(48, 40, 3), output_size=(48, 40))["rgb"]
    torch.testing.assert_close(final, torch.full((48, 40, 3), 0.5 * frame / model.num_frames + 0.5))


def test_driven_model_has_no_dataset_backdrop(split):
    train, _ = split
    model = build(train).eval()
    camera = train.cameras[0:1]
    camera.times = torch.tensor([[1.0]])  # last frame of the 3-frame driving sequence
    with model.driven_by(audio_features=torch.zeros(3, *model.conditioning.audio_features.shape[1:])):
        rgb = model.render_final_frame(camera)["rgb"]
    torch.testing.assert_close(rgb, torch.full((32, 32, 3), 0.5 * 2 / 3))  # over black


def test_post_process_runs_once_per_final_frame(split, tiny_dtnerf_dataset: Path):
    train, _ = split
    model = PostProcessed(config=FlatHeadConfig(), scene_box=train.scene_box, num_train_data=1, metadata=train.metadata)
    model.eval()
    PostProcessed.calls = 0
    outputs = model.get_outputs_for_camera(train.cameras[2:3])
    assert PostProcessed.calls == 1
    torch.testing.assert_close(outputs["rgb"], outputs["rgb_raw"] + 0.1)


def test_dtnerf_eval_scores_a_method_that_is_not_dtnerf(split, tiny_dtnerf_dataset: Path, tmp_path, monkeypatch):
    from dtnerf_ns.evaluation import weights
    from dtnerf_ns.evaluation.evaluator import EvalOptions, evaluate

    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path / "hub")
    train, test = split
    model = build(train).eval()
    pipeline = SimpleNamespace(model=model, datamanager=SimpleNamespace(eval_dataset=TalkingHeadDataset(test)))
    result = evaluate(pipeline, EvalOptions())
    assert result.info["frames"] == len(test.image_filenames) and result.info["resolution"] == [32, 32]
    first = result.per_frame[0]
    gt = torch.from_numpy(read_image(test.image_filenames[0], size=(32, 32))).float() / 255
    rendered = expected_frame(tiny_dtnerf_dataset, first["frame_index"], model.num_frames, (32, 32))
    assert first["psnr"] == pytest.approx(float(-10 * torch.log10(((rendered - gt) ** 2).mean())), abs=1e-3)
    assert not result.metrics["lpips"]["available"]  # weights absent: reported, never computed with random ones


def test_rays_outside_a_region_are_not_rendered(split, tiny_dtnerf_dataset: Path):
    """dtnerf-render renders only the source frame's (grown) head region: elsewhere the frame is its backdrop."""
    from dtnerf_ns.core.compositing import Backdrops
    from data_processing.io_utils import read_mask

    train, _ = split
    model = build(train).eval()
    camera = train.cameras[3:4]
    frame = int(train.metadata["frame_indices"][3])
    region = Backdrops(tiny_dtnerf_dataset, "headless").head_region(frame, (32, 32))
    head = read_mask(layout.mask_path(tiny_dtnerf_dataset, "person", frame), (32, 32)) & ~read_mask(
        layout.mask_path(tiny_dtnerf_dataset, "torso", frame), (32, 32)
    )
    assert region[head].all() and not region.all()  # the head and a margin, not the whole frame
    backdrop = torch.rand(32, 32, 3)
    full = model.render_final_frame(camera, backdrop=backdrop)["rgb"]
    inside = torch.from_numpy(region)
    partial = model.render_final_frame(camera, backdrop=backdrop, region=inside)
    torch.testing.assert_close(partial["rgb"][inside], full[inside])
    torch.testing.assert_close(partial["rgb"][~inside], backdrop[~inside])
    assert float(partial["accumulation"][~inside].abs().max()) == 0.0
