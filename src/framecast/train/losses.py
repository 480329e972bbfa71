"""Training objectives: the VAE's reconstruction + KL, and the DiT's flow matching.

Each returns a function loss_fn(model, batch, generator) -> (loss, logs) for the Trainer.
All randomness (noise, times, caption choice) comes from the trainer's CPU generator, so a
resumed run draws exactly what an uninterrupted one would.

Data-parallel batches carry "rows" = (start, stop, total): this rank holds rows [start, stop)
of a global batch of `total` clips. The loss functions then draw the randomness of the whole
global batch and keep their rows (so N ranks draw what one process would), and return this
rank's share of the global loss: the shares sum over ranks to the single-process loss, and
their logs are global values. Batches without "rows" take the single-process path unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..flow.guidance import cfg
from ..flow.objective import flow_loss, interpolate, sample_times
from ..flow.schedules import resolution_shift
from .distributed import global_sum


def batch_rows(batch: dict, b: int) -> tuple[int, int, int]:
    """(start, stop, total): this rank's rows of the global batch; (0, b, b) for a whole batch."""
    start, stop, total = batch.get("rows", (0, b, b))
    if stop - start != b:
        raise ValueError(f"the batch has {b} clips but its rows say {start}:{stop}")
    return start, stop, total


def foreground(video: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Pixels unlike their frame's typical (median) colour: objects and edges. (B, 1, T, H, W) bool."""
    bg = video.flatten(3).median(dim=3).values[..., None, None]  # (B, C, T, 1, 1)
    return ((video - bg).abs() > threshold).any(dim=1, keepdim=True)


def random_crop(video: torch.Tensor, crop: tuple[int, int, int], generator: torch.Generator,
                tries: int = 4, rows: tuple[int, int, int] | None = None) -> torch.Tensor:
    """A (frames, height, width) window of each clip of a batch (B, C, T, H, W).

    Convolutions do not care about the clip's size, so the VAE trains on small windows at the
    pixel scale of full frames, at a fraction of the cost. Of `tries` random windows per clip
    the one with the most foreground is kept: a window of plain background teaches nothing.
    rows (start, stop, total): video holds rows [start, stop) of a batch of total clips; the
    windows of all of them are drawn, so every rank draws what one process would.
    """
    start, _, total = rows or (0, video.shape[0], video.shape[0])
    t, h, w = (min(c, s) for c, s in zip(crop, video.shape[2:]))
    fg = foreground(video)
    out = []
    for k in range(total):
        i = k - start  # this rank's row, if it holds clip k
        mine = 0 <= i < video.shape[0]
        best, best_fg = None, -1
        for _ in range(tries):
            t0, h0, w0 = (int(torch.randint(0, s - c + 1, (1,), generator=generator))
                          for c, s in zip((t, h, w), video.shape[2:]))
            if not mine:
                continue
            n = int(fg[i, :, t0:t0 + t, h0:h0 + h, w0:w0 + w].sum())
            if n > best_fg:
                best, best_fg = (t0, h0, w0), n
        if mine:
            t0, h0, w0 = best
            out.append(video[i, :, t0:t0 + t, h0:h0 + h, w0:w0 + w])
    return torch.stack(out)


def gradient_error(recon: torch.Tensor, video: torch.Tensor, weight: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Weighted L1 between the differences of recon and video (B, C, T, H, W) along dims."""
    out = recon.new_zeros(())
    for dim in dims:
        n = recon.shape[dim] - 1
        grad = recon.float().diff(dim=dim) - video.float().diff(dim=dim)
        out = out + (grad.abs() * weight.narrow(dim, 1, n)).mean()
    return out


def edge_error(recon: torch.Tensor, video: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between the spatial gradients of recon and video (B, C, T, H, W). A step blurred over
    k pixels costs about twice its height: plain L1 and MSE settle for blur where they are
    unsure, and a box with blurred corners reads as a ball."""
    return gradient_error(recon, video, weight, (3, 4))


def motion_error(recon: torch.Tensor, video: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between the frame-to-frame changes of recon and video (B, C, T, H, W). Per-frame losses
    do not care whether neighbouring frames err alike: a decoder that errs one way on a latent's
    last frame and another on the next latent's first makes objects jump every 4 frames."""
    return gradient_error(recon, video, weight, (2,))


def vae_loss_fn(kl_weight: float, device: torch.device, crop: tuple[int, int, int] | None = None,
                fg_weight: float = 0.0, decoder_only: bool = False, crop_tries: int = 4, edge_weight: float = 0.0,
                motion_weight: float = 0.0, refine=None):
    """L1 + MSE reconstruction (foreground pixels weighted 1 + fg_weight: small objects are a
    sliver of each frame, and a VAE that blurs them away still scores well on the mean) + KL,
    + edge_weight times the L1 between spatial gradients (edge_error: sharp edges)
    + motion_weight times the L1 between frame-to-frame changes (motion_error: smooth motion).

    decoder_only: the encoder is frozen and its posterior mean decoded (what the DiT models),
    for fine-tuning the decoder after the latents are fixed; refine (decoder_only): what the
    decoder is given in place of that mean, refine(z, captions, generator, rows) -> z (say
    dit_denoiser's). crop_tries: windows drawn per clip, the one with the most foreground kept
    (1: uniform windows, backgrounds as often as they are).
    """

    def loss_fn(vae, batch, generator):
        if "rows" in batch:
            return split_loss(vae, batch, generator)
        video = batch["video"]  # (B, 3, T, H, W) in [-1, 1]
        if crop is not None:
            video = random_crop(video, crop, generator, crop_tries)
        video = video.to(device)
        weight = 1.0 + fg_weight * foreground(video).float()
        weight = weight / weight.mean()
        if decoder_only:
            with torch.no_grad():
                z, kl = vae.encode(video).mean, torch.zeros(())
                if refine is not None:
                    z = refine(z, batch["caption"], generator, batch_rows(batch, video.shape[0]))
        else:
            post = vae.encode(video)
            z, kl = post.sample(generator), post.kl()
        recon = vae.decode(z)
        err = recon.float() - video.float()
        l1 = (err.abs() * weight).mean()
        sq = err.pow(2)
        mse = sq.mean()
        loss = l1 + (sq * weight).mean() + kl_weight * kl
        logs = {}
        if edge_weight:
            edge = edge_error(recon, video, weight)
            loss, logs = loss + edge_weight * edge, {**logs, "edge": edge.item()}
        if motion_weight:
            motion = motion_error(recon, video, weight)
            loss, logs = loss + motion_weight * motion, {**logs, "motion": motion.item()}
        psnr = 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10))  # signal range 2 -> peak^2 = 4
        return loss, {"l1": l1.item(), "kl": kl.item(), "psnr": psnr.item(), **logs, "items": video.shape[0]}

    def split_loss(vae, batch, generator):
        """This rank's share of the loss of the global batch (means over the global batch)."""
        video = batch["video"]  # (b, 3, T, H, W): rows [start, stop) of `total` clips
        start, stop, total = batch_rows(batch, video.shape[0])
        if crop is not None:
            video = random_crop(video, crop, generator, crop_tries, rows=(start, stop, total))
        video = video.to(device)
        share = video.shape[0] / total  # of every mean over the global batch
        weight = 1.0 + fg_weight * foreground(video).float()
        weight = weight / (global_sum(weight.mean() * share))  # normalised by the global mean
        if decoder_only:
            with torch.no_grad():
                z, kl = vae.encode(video).mean, torch.zeros(())
                if refine is not None:
                    z = refine(z, batch["caption"], generator, (start, stop, total))
        else:
            post = vae.encode(video)
            noise = torch.randn((total, *post.mean.shape[1:]), generator=generator)[start:stop]  # as Posterior.sample
            z, kl = post.mean + torch.exp(0.5 * post.logvar) * noise.to(post.mean), post.kl() * share
        recon = vae.decode(z)
        err = recon.float() - video.float()
        l1 = (err.abs() * weight).mean() * share
        sq = err.pow(2)
        loss = l1 + (sq * weight).mean() * share + kl_weight * kl
        edge = edge_error(recon, video, weight) * share if edge_weight else torch.zeros(())
        motion = motion_error(recon, video, weight) * share if motion_weight else torch.zeros(())
        loss = loss + edge_weight * edge + motion_weight * motion
        l1_g, kl_g, mse_g, edge_g, motion_g = global_sum(
            torch.stack([l1, kl, sq.mean() * share, edge.detach(), motion.detach()]).float()).tolist()
        psnr = 10 * math.log10(4.0 / max(mse_g, 1e-10))
        logs = {**({"edge": edge_g} if edge_weight else {}), **({"motion": motion_g} if motion_weight else {})}
        return loss, {"l1": l1_g, "kl": kl_g, "psnr": psnr, **logs, "items": total}
    return loss_fn


def dit_denoiser(dit, text, normalize, denormalize, t_max: float, scale: float, device: torch.device):
    """What the sampler's last step hands the decoder: refine(z, captions, generator, rows) -> the
    DiT's clean estimate x_t - t v of latents z (B, C, T', h, w) noised to flow times t ~ U(0, t_max),
    guided by each clip's caption at `scale`. A decoder fine-tuned on these (vae_loss_fn's refine)
    learns the DiT's slightly-off latents, as LTX-Video's decoder finishes the denoising; the DiT
    and text encoder stay frozen. rows (start, stop, total): this rank's rows of the global batch,
    whose draws every rank makes alike."""
    param = next(dit.parameters())

    def model_fn(x, t, cond):
        tokens, mask = cond
        return dit(x.to(param.dtype), t, tokens.to(device, param.dtype), mask.to(device)).float()

    velocity = cfg(model_fn, scale)

    def refine(z, captions, generator, rows):
        start, stop, total = rows
        t = (torch.rand(total, generator=generator) * t_max)[start:stop].to(device)  # (B,)
        noise = torch.randn((total, *z.shape[1:]), generator=generator)[start:stop].to(device)
        x_t = interpolate(normalize(z.float()), noise, t.view(-1, 1, 1, 1, 1))
        b = z.shape[0]
        tokens, mask = text([*captions, ""])  # (B + 1, M, D), (B + 1, M): the empty prompt last, padded alike
        neg = (tokens[b:].expand(b, -1, -1), mask[b:].expand(b, -1))
        v = velocity(x_t, t, ((tokens[:b], mask[:b]), neg))
        return denormalize(x_t - t.view(-1, 1, 1, 1, 1) * v).to(z.dtype)

    return refine


def choose_text(batch: dict, generator: torch.Generator, prompt_prob: float, dropout: float,
                empty: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the short prompt (p = prompt_prob) or the detailed caption, and with p = dropout the
    empty prompt instead (for classifier-free guidance). Returns tokens (B, M, D) and mask (B, M).
    The choices are drawn for the whole global batch (see batch_rows)."""
    cap, cap_mask = batch["caption_tokens"], batch["caption_mask"]
    pro, pro_mask = batch["prompt_tokens"], batch["prompt_mask"]
    e_tok, e_mask = empty  # (1, Me, D), (1, Me)
    m = max(cap.shape[1], pro.shape[1], e_tok.shape[1])

    def pad(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = m - x.shape[1]
        return F.pad(x, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)

    (cap, cap_mask), (pro, pro_mask), (e_tok, e_mask) = pad(cap, cap_mask), pad(pro, pro_mask), pad(e_tok, e_mask)
    start, stop, total = batch_rows(batch, cap.shape[0])
    use_prompt = torch.rand(total, generator=generator)[start:stop] < prompt_prob
    drop = torch.rand(total, generator=generator)[start:stop] < dropout
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
                prompt_prob: float = 0.3, caption_dropout: float = 0.1, cond_prob: float = 0.0,
                time_shift: float = 1.0, time_uniform: float = 0.0):
    """Flow matching on normalised latents: x_t = (1 - t) x0 + t noise, predict noise - x0.

    Times are logit-normal, shifted by resolution_shift(tokens, time_shift), with a share
    time_uniform drawn uniformly (sample_times).

    Frames drawn by `given_frames` stay clean (t = 0) and are left out of the loss. With "rows"
    (see batch_rows) the draws are those of the global batch and the loss is this rank's share.
    """

    def loss_fn(dit, batch, generator):
        x0 = normalize(batch["latents"].float())  # (B, C, T', H', W')
        b, frames = x0.shape[0], x0.shape[2]
        start, stop, total = batch_rows(batch, b)
        tokens, mask = choose_text(batch, generator, prompt_prob, caption_dropout, empty)
        grid = dit.grid(x0.shape)
        t = sample_times(total, generator, shift=resolution_shift(grid[0] * grid[1] * grid[2], time_shift),
                         uniform=time_uniform)[start:stop]
        noise = torch.randn((total, *x0.shape[1:]), generator=generator)[start:stop]
        given = given_frames(total, frames, generator, cond_prob)[start:stop]  # (B, T')
        t_frames = torch.where(given, 0.0, t[:, None])  # (B, T')
        weight = (~given).float()[:, None, :, None, None]  # (B, 1, T', 1, 1)
        x0, noise, t_frames, weight = x0.to(device), noise.to(device), t_frames.to(device), weight.to(device)
        x_t = interpolate(x0, noise, t_frames[:, None, :, None, None])
        pred = dit(x_t, t_frames, tokens.to(device), mask.to(device))
        if "rows" not in batch:
            return flow_loss(pred, x0, noise, weight), {"items": b}
        total_weight = global_sum(weight.expand(x0.shape).float().sum())  # the global loss's denominator
        return flow_loss(pred, x0, noise, weight, total_weight), {"items": total}

    return loss_fn
