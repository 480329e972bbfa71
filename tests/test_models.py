"""Model stack pieces: causal video VAE, patches, RoPE, DiT shapes (tiny presets, CPU)."""

from dataclasses import replace

import pytest
import torch

from framecast.config import PRESETS, ModelConfig, preset
from framecast.models.dit import DiT, patchify, unpatchify
from framecast.models.layers import apply_rope, rope_angles, rope_rotations
from framecast.models.vae import VideoVAE

TINY = PRESETS["tiny"]


SHORT_MEMORY = replace(TINY.vae, time_blocks=1)  # as the default preset: only the middle block looks back


@pytest.fixture(scope="module", params=[TINY.vae, SHORT_MEMORY], ids=["tiny", "short-memory"])
def vae(request):
    torch.manual_seed(0)
    return VideoVAE(request.param).eval()


@pytest.mark.parametrize("t, h, w", [(1, 16, 16), (5, 32, 16), (9, 16, 48), (13, 24, 24)])
def test_vae_shapes_round_trip(vae, t, h, w):
    x = torch.randn(2, 3, t, h, w)
    with torch.no_grad():
        post = vae.encode(x)
        assert post.mean.shape == (2, TINY.vae.latent_channels, 1 + (t - 1) // 4, h // 8, w // 8)
        assert vae.decode(post.mean).shape == x.shape


def test_vae_is_causal(vae):
    x = torch.randn(1, 3, 9, 16, 16)
    with torch.no_grad():
        full = vae.encode(x).mean
        first = vae.encode(x[:, :, :1]).mean  # an image is a one-frame video
        head = vae.encode(x[:, :, :5]).mean
        changed = x.clone()
        changed[:, :, 5:] = torch.randn(1, 3, 4, 16, 16)
        later = vae.encode(changed).mean
    assert torch.allclose(first, full[:, :, :1], atol=1e-5)
    assert torch.allclose(head, full[:, :, :2], atol=1e-5)
    assert torch.allclose(later[:, :, :2], full[:, :, :2], atol=1e-5)  # the future never leaks back
    assert not torch.allclose(later[:, :, 2:], full[:, :, 2:])


def test_chunked_encode_and_decode_equal_whole_clip(vae):
    x = torch.randn(1, 3, 17, 16, 24)
    with torch.no_grad():
        z = vae.encode(x).mean
        assert torch.allclose(vae.encode(x, chunk=1).mean, z, atol=1e-5)
        assert torch.allclose(vae.encode(x, chunk=3).mean, z, atol=1e-5)
        y = vae.decode(z)
        assert torch.allclose(vae.decode(z, chunk=1), y, atol=1e-5)
        assert torch.allclose(vae.decode(z, chunk=2), y, atol=1e-5)


def test_short_memory_vae_looks_back_only_as_far_as_it_trains():
    """time_blocks=1: a latent frame reaches 5 latent frames (20 video frames) of decoded video,
    and a video frame reaches its own latent and 4 after it; with every block looking back it is
    much farther, beyond the 17-frame windows a VAE trains on."""
    def reach(cfg) -> tuple[int, int]:
        torch.manual_seed(0)
        vae = VideoVAE(cfg).eval()
        z, x = torch.randn(1, cfg.latent_channels, 13, 4, 4), torch.randn(1, 3, 49, 16, 16)
        with torch.no_grad():
            nudged = z.clone()
            nudged[:, :, 3] += 1  # latent 3 is video frames 9-12
            frames = (vae.decode(nudged) - vae.decode(z)).abs().amax((0, 1, 3, 4)).nonzero().flatten()
            moved = x.clone()
            moved[:, :, 9] += 1
            latents = (vae.encode(moved).mean - vae.encode(x).mean).abs().amax((0, 1, 3, 4)).nonzero().flatten()
        assert frames.min() == 9 and latents.min() == 3  # and never before: causal
        return int(frames.max()), int(latents.max())

    assert reach(SHORT_MEMORY) == (30, 7)  # to latent 7 (frames 25-28) and the output conv's 2 frames
    long_frames, long_latents = reach(TINY.vae)
    assert long_frames > 40 and long_latents > 9


def test_vae_refuses_wrong_frame_count(vae):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(torch.randn(1, 3, 6, 16, 16))


@pytest.mark.parametrize("shape, p", [((2, 4, 3, 8, 12), (1, 2, 2)), ((1, 8, 4, 4, 4), (2, 1, 2))])
def test_patchify_round_trip(shape, p):
    x = torch.randn(shape)
    grid = (shape[2] // p[0], shape[3] // p[1], shape[4] // p[2])
    tokens = patchify(x, p)
    assert tokens.shape == (shape[0], grid[0] * grid[1] * grid[2], shape[1] * p[0] * p[1] * p[2])
    assert torch.equal(unpatchify(tokens, p, grid), x)


def test_rope_scores_depend_only_on_relative_position():
    """q.k after RoPE at positions (a, b) equals that at (a + d, b + d), also past training sizes."""
    dims = (8, 12, 12)
    rope = rope_rotations(rope_angles((40, 30, 50), dims))  # bigger than any training grid
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(i, j):
        return (apply_rope(q, rope[i:i + 1]) * apply_rope(k, rope[j:j + 1])).sum()

    def index(t, h, w):
        return (t * 30 + h) * 50 + w

    s1 = score(index(1, 2, 3), index(4, 6, 9))
    s2 = score(index(30, 20, 40), index(33, 24, 46))
    assert torch.allclose(s1, s2, atol=1e-4)
    assert not torch.allclose(s1, score(index(1, 2, 3), index(4, 6, 10)), atol=1e-4)


@pytest.mark.parametrize("latent", [(1, 4, 4), (4, 2, 8), (7, 8, 4)])
def test_dit_any_size(latent):
    torch.manual_seed(0)
    dit = DiT(TINY.dit)
    torch.nn.init.normal_(dit.patch_out.weight, std=0.02)  # zero-initialised output otherwise
    x = torch.randn(2, TINY.dit.latent_channels, *latent)
    v = dit(x, torch.rand(2), torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool))
    assert v.shape == x.shape and torch.isfinite(v).all() and v.abs().sum() > 0


def test_dit_text_mask_hides_padding():
    torch.manual_seed(0)
    dit = DiT(TINY.dit)
    torch.nn.init.normal_(dit.patch_out.weight, std=0.02)
    x, t = torch.randn(1, 4, 2, 4, 4), torch.rand(1)
    text = torch.randn(1, 6, 384)
    mask = torch.tensor([[True, True, True, False, False, False]])
    other = text.clone()
    other[:, 3:] = torch.randn(1, 3, 384)
    assert torch.allclose(dit(x, t, text, mask), dit(x, t, other, mask), atol=1e-6)


def test_presets_registry():
    assert {"tiny", "default", "large"} <= set(PRESETS)
    cfg = preset("default")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_dit_per_frame_times_match_one_time_per_clip_and_condition_frame_by_frame():
    torch.manual_seed(0)
    dit = DiT(TINY.dit)
    for p in dit.parameters():  # adaLN-zero starts with no time dependence at all
        torch.nn.init.normal_(p, std=0.05)
    x, text = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 5, 384)
    t = torch.tensor([0.3, 0.8])
    whole = dit(x, t, text)
    assert torch.allclose(whole, dit(x, t[:, None].expand(2, 3), text), atol=1e-5)
    # a frame given clean (t = 0) changes the prediction: time now varies along the clip
    frames = torch.tensor([[0.0, 0.3, 0.3], [0.8, 0.8, 0.8]])
    mixed = dit(x, frames, text)
    assert not torch.allclose(mixed[0], whole[0], atol=1e-4) and torch.allclose(mixed[1], whole[1], atol=1e-5)
    with pytest.raises(ValueError, match="per-frame times"):
        dit(x, torch.rand(2, 2), text)


def test_dit_head_starts_as_the_dit_without_it_and_then_refines_each_cell():
    torch.manual_seed(0)
    plain = DiT(TINY.dit)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    headed = DiT(replace(TINY.dit, head_channels=8))
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("head.") for k in missing)
    x, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 5, 384)
    t = torch.tensor([0.3, 0.8])
    assert torch.equal(headed(x, t, text), plain(x, t, text))  # its last convolution starts at zero
    torch.nn.init.normal_(headed.head.net[-1].weight, std=0.05)
    v = headed(x, t, text)
    assert v.shape == x.shape and not torch.allclose(v, plain(x, t, text), atol=1e-4)
    assert torch.allclose(v, headed(x, t[:, None].expand(2, 3), text), atol=1e-5)  # per-frame times, same values
    # the head sees the noisy latents cell by cell: a change in one cell moves the velocity
    # around it even where the transformer's patch token is the same
    y = x.clone()
    y[:, :, 1, 3, 3] += 1.0
    diff = (headed(y, t, text) - v).abs().sum(dim=(0, 1))  # (T, H, W)
    assert diff[1, 3, 3] > 0 and diff[1, 7, 7] < diff[1, 3, 3]
