"""AudioMouthFaceAlignTransformer: shapes, attention normalisation, gradients, audio sensitivity."""

import pytest
import torch

from dtnerf_ns.methods.dtnerf.field_components.audio_align_transformer import AudioMouthFaceAlignTransformer

N, A, D = 12, 16, 8


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(N, A, generator=g)
    x = torch.rand(N, 3, generator=g) * 2 - 1
    feats = torch.randn(N, 3, D, generator=g)
    return audio, x, feats


def test_shapes_and_weights_sum_to_one():
    torch.manual_seed(0)
    net = AudioMouthFaceAlignTransformer(audio_dim=A, feat_dim=D, out_dim=10, model_dim=32, num_heads=4)
    audio, x, feats = _inputs()
    out = net(audio, x, feats)
    assert out.shape == (N, 10)
    out2, attn = net(audio, x, feats, return_attention=True)
    torch.testing.assert_close(out, out2)
    assert attn.shape == (N, 4, 3)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(N, 4))


def test_gradients_reach_qkv_and_audio():
    torch.manual_seed(0)
    net = AudioMouthFaceAlignTransformer(audio_dim=A, feat_dim=D, out_dim=10, model_dim=32, num_heads=4)
    audio, x, feats = _inputs()
    audio.requires_grad_(True)
    feats.requires_grad_(True)
    net(audio, x, feats).square().sum().backward()
    for name in ("q_proj", "k_proj", "v_proj"):
        grad = getattr(net, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert net.token_embedding.grad.abs().sum() > 0
    assert audio.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0


def test_audio_changes_output_and_attention():
    torch.manual_seed(0)
    net = AudioMouthFaceAlignTransformer(audio_dim=A, feat_dim=D, out_dim=10, model_dim=32, num_heads=4)
    audio, x, feats = _inputs()
    out_a, attn_a = net(audio, x, feats, return_attention=True)
    out_b, attn_b = net(torch.randn(N, A), x, feats, return_attention=True)
    assert not torch.allclose(out_a, out_b)
    assert not torch.allclose(attn_a, attn_b)


def test_rejects_bad_config_and_token_count():
    with pytest.raises(ValueError):
        AudioMouthFaceAlignTransformer(model_dim=30, num_heads=4)
    net = AudioMouthFaceAlignTransformer(audio_dim=A, feat_dim=D)
    with pytest.raises(ValueError):
        net(torch.randn(N, A), torch.rand(N, 3), torch.randn(N, 4, D))
