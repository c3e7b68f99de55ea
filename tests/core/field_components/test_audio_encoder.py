"""AudioNet / AudioAttNet / AudioEncoder shapes."""

import torch

from dtnerf_ns.core.field_components.audio_encoder import AudioAttNet, AudioEncoder, AudioNet


def test_audio_net_shapes():
    net = AudioNet(in_channels=29, audio_dim=32)
    assert net(torch.randn(4, 16, 29)).shape == (4, 32)
    assert net(torch.randn(2, 8, 16, 29)).shape == (2, 8, 32)


def test_audio_att_net_smoothing():
    net = AudioAttNet(audio_dim=32, window=8)
    codes = torch.randn(3, 8, 32)
    out, w = net(codes, return_weights=True)
    assert out.shape == (3, 32) and w.shape == (3, 8)
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    torch.testing.assert_close(out, (w[..., None] * codes).sum(1))


def test_audio_encoder():
    enc = AudioEncoder(in_channels=29, audio_dim=32, window=8)
    feats = torch.randn(2, 8, 16, 29)
    assert enc(feats).shape == (2, 32)
    # without smoothing: the centre frame's code
    torch.testing.assert_close(enc(feats, smooth=False), enc.audio_net(feats[:, 4]))
