"""Training objectives: the VAE's reconstruction + KL, and the DiT's flow matching.

Each returns a function loss_fn(model, batch, generator) -> (loss, logs) for the Trainer.
All randomness (noise, times, caption choice) comes from the trainer's CPU generator, so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..flow.objective import flow_loss, interpolate, sample_times
from ..flow.schedules import resolution_shift


def foreground(video: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Pixels unlike their frame's typical (median) colour: objects and edges. (B, 1, T, H, W) bool."""
    bg = video.flatten(3).median(dim=3).values[..., None, None]  # (B, C, T, 1, 1)
    return ((video - bg).abs() > threshold).any(dim=1, keepdim=True)


def random_crop(video: torch.Tensor, crop: tuple[int, int, int], generator: torch.Generator,
                tries: int = 4) -> torch.Tensor:
    """A (frames, height, width) window of each clip of a batch (B, C, T, H, W).

    Convolutions do not care about the clip's size, so the VAE trains on small windows at the
    pixel scale of full frames, at a fraction of the cost. Of `tries` random windows per clip
    the one with the most foreground is kept: a window of plain background teaches nothing.
    """
    t, h, w = (min(c, s) for c, s in zip(crop, video.shape[2:]))
    fg = foreground(video)
    out = []
    for i in range(video.shape[0]):
        best, best_fg = None, -1
        for _ in range(tries):
            t0, h0, w0 = (int(torch.randint(0, s - c + 1, (1,), generator=generator))
                          for c, s in zip((t, h, w), video.shape[2:]))
            n = int(fg[i, :, t0:t0 + t, h0:h0 + h, w0:w0 + w].sum())
            if n > best_fg:
                best, best_fg = (t0, h0, w0), n
        t0, h0, w0 = best
        out.append(video[i, :, t0:t0 + t, h0:h0 + h, w0:w0 + w])
    return torch.stack(out)


def vae_loss_fn(kl_weight: float, device: torch.device, crop: tuple[int, int, int] | None = None,
                fg_weight: float = 0.0, decoder_only: bool = False, crop_tries: int = 4):
    """L1 + MSE reconstruction (foreground pixels weighted 1 + fg_weight: small objects are a
    sliver of each frame, and a VAE that blurs them away still scores well on the mean) + KL.

    decoder_only: the encoder is frozen and its posterior mean decoded (what the DiT models),
    for fine-tuning the decoder after the latents are fixed. crop_tries: windows drawn per clip,
    the one with the most foreground kept (1: uniform windows, backgrounds as often as they are).
    """

    def loss_fn(vae, batch, generator):
        video = batch["video"]  # (B, 3, T, H, W) in [-1, 1]
        if crop is not None:
            video = random_crop(video, crop, generator, crop_tries)
        video = video.to(device)
        weight = 1.0 + fg_weight * foreground(video).float()
        weight = weight / weight.mean()
        if decoder_only:
            with torch.no_grad():
                z, kl = vae.encode(video).mean, torch.zeros(())
        else:
            post = vae.encode(video)
            z, kl = post.sample(generator), post.kl()
        recon = vae.decode(z)
        err = recon.float() - video.float()
        l1 = (err.abs() * weight).mean()
        sq = err.pow(2)
        mse = sq.mean()
        loss = l1 + (sq * weight).mean() + kl_weight * kl
        psnr = 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10))  # signal range 2 -> peak^2 = 4
        return loss, {"l1": l1.item(), "kl": kl.item(), "psnr": psnr.item(), "items": video.shape[0]}
    return loss_fn


def choose_text(batch: dict, generator: torch.Generator, prompt_prob: float, dropout: float,
                empty: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the short prompt (p = prompt_prob) or the detailed caption, and with p = dropout the
    empty prompt instead (for classifier-free guidance). Returns tokens (B, M, D) and mask (B, M)."""
    cap, cap_mask = batch["caption_tokens"], batch["caption_mask"]
    pro, pro_mask = batch["prompt_tokens"], batch["prompt_mask"]
    e_tok, e_mask = empty  # (1, Me, D), (1, Me)
    m = max(cap.shape[1], pro.shape[1], e_tok.shape[1])

    def pad(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = m - x.shape[1]
        return F.pad(x, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)

    (cap, cap_mask), (pro, pro_mask), (e_tok, e_mask) = pad(cap, cap_mask), pad(pro, pro_mask), pad(e_tok, e_mask)
    b = cap.shape[0]
    use_prompt = torch.rand(b, generator=generator) < prompt_prob
    drop = torch.rand(b, generator=generator) < dropout
    tokens = torch.where(use_prompt[:, None, None], pro, cap)
    mask = torch.where(use_prompt[:, None], pro_mask, cap_mask)
    tokens = torch.where(drop[:, None, None], e_tok.expand_as(tokens), tokens)
    mask = torch.where(drop[:, None], e_mask.expand_as(mask), mask)
    return tokens, mask


def given_frames(batch: int, frames: int, generator: torch.Generator, prob: float) -> torch.Tensor:
    """Which latent frames a training clip is given clean: (B, T') bool.

    With probability `prob` a clip gets one of the patterns generation uses, equally often: the
    first frame (image-to-video), a head (extend forward), a tail (extend backward), or a head
    and a tail (connect two clips, loop); otherwise none (text-to-video). At least one frame
    is always left to generate.
    """
    given = torch.zeros(batch, frames, dtype=torch.bool)
    if frames < 2:
        return given
    use = torch.rand(batch, generator=generator) < prob
    kind = torch.randint(0, 4, (batch,), generator=generator)
    head = torch.randint(1, frames, (batch,), generator=generator)  # 1 .. T'-1
    tail = torch.randint(1, frames, (batch,), generator=generator)
    for i in range(batch):
        if not use[i]:
            continue
        k, h, tl = int(kind[i]), int(head[i]), int(tail[i])
        if k == 0:
            given[i, 0] = True
        elif k == 1:
            given[i, :h] = True
        elif k == 2:
            given[i, frames - tl:] = True
        else:
            h = min(h, frames - 2) if frames > 2 else 0
            tl = min(tl, frames - 1 - h)
            given[i, :h] = True
            given[i, frames - tl:] = True
    return given


def dit_loss_fn(normalize, empty: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                prompt_prob: float = 0.3, caption_dropout: float = 0.1, cond_prob: float = 0.0):
    """Flow matching on normalised latents: x_t = (1 - t) x0 + t noise, predict noise - x0.

    Frames drawn by `given_frames` stay clean (t = 0) and are left out of the loss.
    """

    def loss_fn(dit, batch, generator):
        x0 = normalize(batch["latents"].float())  # (B, C, T', H', W')
        b, frames = x0.shape[0], x0.shape[2]
        tokens, mask = choose_text(batch, generator, prompt_prob, caption_dropout, empty)
        grid = dit.grid(x0.shape)
        t = sample_times(b, generator, shift=resolution_shift(grid[0] * grid[1] * grid[2]))
        noise = torch.randn(x0.shape, generator=generator)
        given = given_frames(b, frames, generator, cond_prob)  # (B, T')
        t_frames = torch.where(given, 0.0, t[:, None])  # (B, T')
        weight = (~given).float()[:, None, :, None, None]  # (B, 1, T', 1, 1)
        x0, noise, t_frames, weight = x0.to(device), noise.to(device), t_frames.to(device), weight.to(device)
        x_t = interpolate(x0, noise, t_frames[:, None, :, None, None])
        pred = dit(x_t, t_frames, tokens.to(device), mask.to(device))
        return flow_loss(pred, x0, noise, weight), {"items": b}

    return loss_fn
