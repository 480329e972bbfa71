"""The training loop: loss goes down, resume is bit-exact, logs are written."""

import json

import torch
import torch.nn.functional as F

from framecast.config import PRESETS
from framecast.models.dit import DiT
from framecast.models.vae import VideoVAE
from framecast.train.losses import dit_loss_fn, edge_error, foreground, motion_error, random_crop, vae_loss_fn
from framecast.train.trainer import LoopConfig, Trainer, ema_decay_at
from framecast.world.clip import make_clip

CPU = torch.device("cpu")
TINY = PRESETS["tiny"]


class Batches:
    """Batch i is a function of (seed, i) alone; state = i (the minimal resumable source)."""

    def __init__(self, make, seed=0, fixed=False):
        self.make, self.seed, self.fixed, self.i = make, seed, fixed, 0

    def next(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + (0 if self.fixed else self.i))
        self.i += 1
        return self.make(g)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def latent_batch(g, b=4):
    c = TINY.dit.latent_channels
    tok = torch.randn(b, 5, 384, generator=g)
    mask = torch.ones(b, 5, dtype=torch.bool)
    return {"latents": torch.randn(b, c, 2, 4, 4, generator=g), "caption_tokens": tok, "caption_mask": mask,
            "prompt_tokens": tok[:, :3].clone(), "prompt_mask": mask[:, :3].clone()}


def video_batch(g, b=2):
    seeds = torch.randint(0, 2**31, (b,), generator=g).tolist()
    frames = torch.stack([torch.from_numpy(make_clip(s, 5 / 8, 8, 16, 16).frames) for s in seeds])
    return {"video": frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1}  # (B, 3, 5, 16, 16)


EMPTY = (torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool))


def dit_trainer(out, steps, fixed=False, seed=0):
    torch.manual_seed(seed)
    loss = dit_loss_fn(lambda z: z, EMPTY, CPU)
    cfg = LoopConfig(steps=steps, lr=3e-3, warmup=3, ema_decay=0.9, log_every=2, ckpt_every=5, seed=seed)
    return Trainer("dit", DiT(TINY.dit), loss, Batches(latent_batch, seed, fixed), cfg, out, CPU, progress=False)


def fixed_draw(tr, batch):
    """The loss at one fixed draw of noise and time (the training draws vary step to step)."""
    with torch.no_grad():
        return tr.loss_fn(tr.model, batch, torch.Generator().manual_seed(1))[0].item()


def test_dit_loss_decreases_on_a_fixed_batch(tmp_path):
    tr = dit_trainer(tmp_path, 60, fixed=True)
    batch = latent_batch(torch.Generator().manual_seed(0))
    before = fixed_draw(tr, batch)
    tr.run()
    assert fixed_draw(tr, batch) < 0.75 * before
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 30


def test_vae_loss_decreases(tmp_path):
    torch.manual_seed(0)
    cfg = LoopConfig(steps=40, lr=1e-2, warmup=3, log_every=10, ckpt_every=100)
    tr = Trainer("vae", VideoVAE(TINY.vae), vae_loss_fn(1e-6, CPU), Batches(video_batch, fixed=True), cfg, tmp_path, CPU,
                 progress=False)
    batch = video_batch(torch.Generator().manual_seed(0))
    before = fixed_draw(tr, batch)
    tr.run()
    assert fixed_draw(tr, batch) < 0.6 * before


def test_resume_is_bit_exact(tmp_path):
    whole = dit_trainer(tmp_path / "a", 10)
    whole.run()

    part = dit_trainer(tmp_path / "b", 10)
    for _ in range(5):  # "killed" after step 5, with its checkpoint on disk
        part.train_step()
    part.save()
    torch.manual_seed(123)  # whatever the process did since must not matter
    again = dit_trainer(tmp_path / "b", 10)
    assert again.resume() and again.step == 5
    again.run()
    for (name, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(whole.ema.state_dict().values(), again.ema.state_dict().values()):
        assert torch.equal(a, b)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8, 10] and all("loss" in r and "lr" in r for r in log)


def test_vae_random_crop_window():
    video = torch.arange(2 * 3 * 17 * 20 * 24, dtype=torch.float32).reshape(2, 3, 17, 20, 24)
    a = random_crop(video, (9, 8, 16), torch.Generator().manual_seed(0))
    b = random_crop(video, (9, 8, 16), torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 9, 8, 16) and torch.equal(a, b)
    for i in range(2):  # each clip's window is a contiguous piece of that clip
        t0, h0, w0 = (int(v) for v in torch.nonzero(video[i, 0] == a[i, 0, 0, 0, 0])[0])
        assert torch.equal(a[i], video[i, :, t0:t0 + 9, h0:h0 + 8, w0:w0 + 16])
    assert random_crop(video, (33, 64, 64), torch.Generator()).shape == video.shape  # never larger than the clip


def test_vae_crops_seek_the_objects():
    """A small object in a corner of plain frames: windows that hold it are picked far more often."""
    video = -torch.ones(1, 3, 5, 64, 64)
    video[:, :, :, 2:8, 2:8] = 1.0
    assert foreground(video)[0, 0, 0].sum() == 36

    def hits(tries):
        g = torch.Generator().manual_seed(0)
        return sum(bool((random_crop(video, (5, 24, 24), g, tries=tries) > 0).any()) for _ in range(60))

    assert hits(8) > 2 * hits(1) and hits(8) >= 10  # chance: 4% a window, 28% best of 8


def test_given_frames_patterns():
    from framecast.train.losses import given_frames
    g = torch.Generator().manual_seed(0)
    assert not given_frames(64, 13, g, 0.0).any()
    given = given_frames(400, 13, g, 1.0)
    assert given.any(1).all() and (~given).any(1).all()  # something given, something to generate
    first_only = given[:, 0] & (given.sum(1) == 1)
    tails = given[:, -1] & ~given[:, 0]
    both = given[:, 0] & given[:, -1]
    assert first_only.any() and tails.any() and both.any()
    assert not given_frames(8, 1, g, 1.0).any()  # a single latent frame is always generated


def test_given_frames_are_left_out_of_the_dit_loss():
    """The loss ignores what the model predicts on frames it was given clean."""
    torch.manual_seed(0)
    dit = DiT(TINY.dit)
    batch = latent_batch(torch.Generator().manual_seed(3))
    loss = dit_loss_fn(lambda z: z, EMPTY, CPU, prompt_prob=0.0, caption_dropout=0.0, cond_prob=1.0)
    base = loss(dit, batch, torch.Generator().manual_seed(5))[0]
    from framecast.train.losses import given_frames

    class Spoil(torch.nn.Module):  # wrong, huge predictions on the given frames only
        def __init__(self):
            super().__init__()
            self.inner = dit

        def grid(self, shape):
            return dit.grid(shape)

        def forward(self, x, t, text, mask):
            v = dit(x, t, text, mask)
            return torch.where((t == 0)[:, None, :, None, None], v + 1e3, v)

    spoiled = loss(Spoil(), batch, torch.Generator().manual_seed(5))[0]
    assert torch.allclose(base, spoiled)
    assert given_frames(4, 2, torch.Generator().manual_seed(0), 1.0).any()


def test_edge_loss_prefers_a_sharp_wrong_colour_to_a_blurred_right_one():
    video = torch.full((1, 3, 1, 16, 16), -1.0)
    video[..., 4:12, 4:12] = 1.0  # a white box on black
    blurred = F.avg_pool3d(video, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)
    tinted = video + 0.2  # every pixel off, every edge kept
    ones = torch.ones_like(video[:, :1])
    assert (tinted - video).abs().mean() > (blurred - video).abs().mean()  # plain L1 prefers the blur
    assert edge_error(tinted, video, ones) < 1e-6 < edge_error(blurred, video, ones)


def test_motion_loss_prefers_a_steady_error_to_a_jump_between_frames():
    video = torch.full((1, 3, 9, 16, 16), -1.0)
    for t in range(9):
        video[:, :, t, 4:8, t:t + 4] = 1.0  # a box moving a pixel a frame
    steady = video + 0.2  # every frame off alike: the motion is the clip's
    jumpy = video.clone()
    jumpy[:, :, 4:] = video[:, :, 4:].roll(1, dims=-1)  # from frame 4 on the box is a pixel ahead
    ones = torch.ones_like(video[:, :1])
    assert (steady - video).abs().mean() > (jumpy - video).abs().mean()  # plain L1 prefers the jump
    assert motion_error(steady, video, ones) < 1e-6 < motion_error(jumpy, video, ones)


def test_the_ema_tracks_the_model_through_warm_up_then_averages_ever_longer():
    assert [ema_decay_at(s, 200, 0.999) for s in (1, 200)] == [0.0, 0.0]  # the EMA is the model
    decays = [ema_decay_at(s, 200, 0.999) for s in range(201, 20000)]
    assert decays[0] == 2 / 11 and all(a <= b for a, b in zip(decays, decays[1:])) and decays[-1] == 0.999
    # 1000 steps after warm-up, the weights of warm-up's end count for well under 1% (0.999 ** 1000: 37%)
    left = 1.0
    for s in range(201, 1201):
        left *= ema_decay_at(s, 200, 0.999)
    assert left < 0.01


class OracleDiT(torch.nn.Module):
    """A 'DiT' that knows the clean latents x0: its velocity (x_t - x0) / t denoises exactly."""

    def __init__(self, x0):
        super().__init__()
        self.x0, self.w = x0, torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, x, t, tokens, mask):
        self.seen.append((x.shape[0], tokens.shape[0]))
        tt = t.view(-1, 1, 1, 1, 1)
        return torch.where(tt > 0, (x - self.x0.repeat(x.shape[0] // self.x0.shape[0], 1, 1, 1, 1)) / tt.clamp_min(1e-9),
                           torch.zeros_like(x))


def fake_text(prompts):
    """Token embeddings padded to the longest prompt, as the text encoder pads."""
    m = max(1, max(len(p) for p in prompts))
    mask = torch.tensor([[i < max(1, len(p)) for i in range(m)] for p in prompts])
    return torch.randn(len(prompts), m, 8) * mask[..., None], mask


def test_the_decoder_learns_the_dits_one_step_denoising_of_noised_latents():
    """dit_denoiser hands the decoder x_t - t v (the sampler's last clean estimate) for latents noised
    to t ~ U(0, t_max), in the DiT's normalised space; guided by each caption against the empty prompt;
    each process draws the noise of its own rows of the global batch."""
    from framecast.train.losses import dit_denoiser
    z = torch.randn(4, 3, 2, 4, 4) * 2 + 1  # raw latents; the DiT works on (z - 1) / 2
    norm, denorm = (lambda x: (x - 1) / 2), (lambda x: x * 2 + 1)
    caps = ["a red ball", "a blue box falls", "", "two triangles"]
    oracle = OracleDiT(norm(z))
    refine = dit_denoiser(oracle, fake_text, norm, denorm, 0.3, 2.5, CPU)
    out = refine(z, caps, torch.Generator().manual_seed(0), (0, 4, 4))
    assert torch.allclose(out, z, atol=1e-4)  # a perfect DiT gives the clean latents back
    assert oracle.seen == [(8, 8)]  # one batch: captions, then the empty prompt for guidance

    blind = OracleDiT(torch.zeros_like(z))  # velocity x_t / t: its estimate is 0, whatever the noise
    refine = dit_denoiser(blind, fake_text, norm, denorm, 0.3, 1.0, CPU)
    out = refine(z, caps, torch.Generator().manual_seed(0), (0, 4, 4))
    assert torch.allclose(out, denorm(torch.zeros_like(z)), atol=1e-4) and blind.seen == [(4, 4)]  # scale 1: no guidance

    noisy = OracleDiT(torch.zeros_like(z))
    noisy.forward = lambda x, t, tokens, mask: torch.zeros_like(x)  # no velocity: the estimate is x_t itself
    refine = dit_denoiser(noisy, fake_text, norm, denorm, 0.3, 1.0, CPU)
    whole = refine(z, caps, torch.Generator().manual_seed(5), (0, 4, 4))
    err = (norm(whole) - norm(z)).flatten(1).abs().mean(1)  # t (x0 - noise) per clip: t drawn in [0, 0.3)
    assert (err > 0).all() and (err < 0.3 * 2).all() and not torch.allclose(whole, z)
    halves = [refine(z[a:b], caps[a:b], torch.Generator().manual_seed(5), (a, b, 4)) for a, b in ((0, 1), (1, 4))]
    assert torch.equal(torch.cat(halves), whole)  # two processes draw what one does
    none = dit_denoiser(noisy, fake_text, norm, denorm, 0.0, 1.0, CPU)(z, caps, torch.Generator(), (0, 4, 4))
    assert torch.allclose(none, z, atol=1e-5)  # t_max 0: the clean latents
