"""DT-NeRF's two-stage loss (paper: "two stage fine-tune").

* Coarse stage (ray batches): mean squared error over face-mask rays + ``mouth_loss_mult`` x mean over mouth-mask
  rays + ``image_loss_mult`` x mean over all rays. The last term is ours, not the paper's: without it nothing teaches
  the head to be transparent outside the face, so the composite over the head-less image would not converge.
* Gate regularisers (both stages, ER-NeRF's): the rendered audio gate on rays outside the face mask and the rendered
  eye gate on rays outside the eyes mask, so that only the speaking and blinking regions follow those signals.
* Fine stage (patch batches, ``batch["patch_size"]``): MSE + ``lpips_loss_mult`` x LPIPS per patch. LPIPS needs
  pretrained AlexNet weights; when they cannot be loaded (offline) one warning is logged and the fine stage uses MSE
  only (LPIPS is never computed with random weights).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Dict, Optional

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from dtnerf_ns.core.data.talking_head_dataset import FACE_MASK, MOUTH_MASK, mask_key

EYES_MASK = mask_key("eyes")


def masked_mse(error: Float[Tensor, "rays"], mask: Tensor) -> Float[Tensor, ""]:
    """Mean of per-ray squared error over rays where mask > 0.5 (0 when there are none)."""
    m = (mask.reshape(-1) > 0.5).to(error.dtype)
    return (error * m).sum() / m.sum().clamp_min(1.0)


class LazyLPIPS:
    """LPIPS (AlexNet), built on first use; None (after one warning) when its pretrained weights cannot be had."""

    def __init__(self) -> None:
        self._net: Optional[Any] = None
        self._tried = False

    @property
    def loaded(self) -> Optional[Any]:
        """The network if it was built already (never builds it: offline start-up must not try)."""
        return self._net

    def get(self, device: torch.device) -> Optional[Any]:
        if not self._tried:
            self._tried = True
            try:
                import lpips  # noqa: PLC0415

                # pretrained=True + pnet_rand=False: AlexNet ImageNet weights and LPIPS' linear layers; raises when
                # they cannot be loaded (e.g. offline) - never random weights. Silence its download chatter.
                quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
                with warnings.catch_warnings(), quiet[0], quiet[1]:
                    warnings.simplefilter("ignore")
                    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=False, verbose=False)
                for p in net.parameters():
                    p.requires_grad_(False)
                self._net = net.eval()
            except Exception as err:  # noqa: BLE001 - any failure means "no LPIPS"
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                CONSOLE.print(f"[bold yellow]WARNING: LPIPS unavailable ({reason}); the fine stage uses MSE only.")
        return self._net.to(device) if self._net is not None else None


def coarse_losses(
    pred: Float[Tensor, "rays 3"],
    gt: Float[Tensor, "rays 3"],
    batch: Dict[str, Any],
    face_mult: float,
    mouth_mult: float,
    image_mult: float,
) -> Dict[str, Tensor]:
    """Face-mask, mouth-mask and whole-batch MSE (see module docstring)."""
    error = ((pred - gt) ** 2).mean(dim=-1)
    return {
        "face_loss": face_mult * masked_mse(error, batch[FACE_MASK].to(error.device)),
        "mouth_loss": mouth_mult * masked_mse(error, batch[MOUTH_MASK].to(error.device)),
        "image_loss": image_mult * error.mean(),
    }


def gate_losses(
    outputs: Dict[str, Tensor], batch: Dict[str, Any], audio_mult: float, eye_mult: float
) -> Dict[str, Tensor]:
    """Mean rendered gate over the rays outside the region allowed to follow each signal (absent masks: no loss)."""
    losses = {}
    for name, mask_name, mult in (("audio_gate", FACE_MASK, audio_mult), ("eye_gate", EYES_MASK, eye_mult)):
        if mult > 0 and name in outputs and mask_name in batch:
            gate = outputs[name].reshape(-1)
            outside = (batch[mask_name].to(gate.device).reshape(-1) <= 0.5).to(gate.dtype)
            losses[f"{name}_loss"] = mult * (gate * outside).mean()
    return losses


def fine_losses(
    pred: Float[Tensor, "rays 3"], gt: Float[Tensor, "rays 3"], patch_size: int, lpips_net: Optional[Any], lpips_mult: float
) -> Dict[str, Tensor]:
    """Whole-patch MSE, plus LPIPS over the [patches, P, P] images when the network is available."""
    losses = {"rgb_loss": ((pred - gt) ** 2).mean()}
    if lpips_net is not None and lpips_mult > 0:

        def to_images(x: Tensor) -> Tensor:
            return x.reshape(-1, patch_size, patch_size, 3).permute(0, 3, 1, 2)

        losses["lpips_loss"] = lpips_mult * lpips_net(to_images(pred).clamp(0, 1), to_images(gt), normalize=True).mean()
    return losses
