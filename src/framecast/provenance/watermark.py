"""An invisible watermark in the pixels that survives re-encoding, resizing, cropping and trimming.

The mark is one faint, smooth luma pattern added to every frame (2.8 levels RMS, PSNR about
39 dB). It is static on purpose: H.264 codes a frame from the last one, so a pattern that
stays put is carried by every P- and B-frame for free, while one that changes per frame is
quantised away at CRF 28 (measured: 66% of a static mark survives CRF 28, 45% of a flipping
one). The detector reads the per-pixel median luma over the frames: the mark stays, moving
objects go, and trimmed or dropped frames change nothing.

The pattern lives on a canonical N x N grid stretched over the frame, so a resize is undone
by resampling to that grid. It is a sum of orthonormal, band-limited (2 to 9 cycles per frame)
carriers: a pilot, whose correlation finds the geometry of a crop and says whether a mark is
there at all, and one carrier per coded payload bit (a 32-bit id and a CRC-16 under a rate-1/2
convolutional code). The detector correlates gradients, not levels: the world is flat colour
with sharp edges, so edges (and the pixels next to them) are dropped and texture clipped, and
what is left in flat parts is the mark alone. Decoy carriers go through the same search and
give each video its own null distribution, so the p-value holds on any content. Embedding
cancels what the detector would read from the host alone (improved spread spectrum), so the
content does not pull the bits. A list Viterbi decoder hands the CRC the 16 likeliest payloads,
not just the likeliest, and the p-value counts every payload tried.

The key is public: anyone can detect the mark (that is the point), and so a determined
adversary who reads this code can also remove it. C2PA credentials carry the signed claim;
the watermark is what is left when they are stripped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .ecc import (
    CRC_BITS,
    coded_length,
    conv_encode,
    crc16,
    from_bits,
    list_viterbi_decode,
    to_bits,
)

KEY = "framecast-watermark-v1"  # the mark's format: any change below that alters the pattern needs a new key
GRID = 64  # canonical pattern grid (N)
BAND = (2.0, 9.0)  # cycles per frame: survives a 0.5x resize of a 64-pixel frame and CRF 35
ID_BITS = 32
PAYLOAD_BITS = ID_BITS + CRC_BITS
CODED_BITS = coded_length(PAYLOAD_BITS)
DECOYS = 64
STRENGTH = 2.8  # RMS luma levels of the mark: PSNR about 39 dB
PILOT_SHARE = 0.35  # of the mark's energy; the rest carries the payload
MAX_CROP = 0.7  # the smallest crop (per side) the geometry search looks for
ZOOM_STEPS = 16  # log-spaced from 1 to 1 / MAX_CROP
ASPECTS = (1.0,)  # zoom x / zoom y tried
DETECT_P = 1e-6  # report a mark when the chance of a clean video scoring as high is below this
PATHS = 16  # likeliest payloads tried against the CRC at a geometry
LIST_P = 1e-3  # a geometry is decoded with a list only when the pilot's test there is this significant
DECODE_TRIES = 4  # geometries at which the payload is decoded: identity (twice), the search's best
MAX_CANCEL = 0.5  # of the mark's energy that may go to cancelling the host
CORRECTIONS = 2  # read-back corrections while embedding
STILL_FRAMES = 180  # frames the median runs over
CLIP = 3.0  # luma levels per canonical pixel: the mark's steepest slopes (1% of them are steeper)
EDGE = 8.0  # a gradient steeper than this is an edge (the world's are 18 and up, half that at 0.5x), not texture
NEAR_EDGE = 1  # pixels around an edge dropped with it


@dataclass
class Detection:
    detected: bool
    id: int | None  # the decoded 32-bit id, when its CRC checks out
    confidence: float  # 1 - p_value
    p_value: float  # chance that a video without the mark scores at least this high
    pilot_z: float  # pilot score in standard deviations of the decoys' scores
    geometry: tuple[float, ...]  # zoom y, zoom x, offset y, offset x of the video on the canonical grid
    best_guess: int = 0  # the decoded id even when its CRC fails (for measuring bit accuracy)

    def to_json(self) -> dict:
        return {"detected": self.detected, "id": None if self.id is None else f"{self.id:08x}",
                "confidence": self.confidence, "p_value": self.p_value, "pilot_z": round(self.pilot_z, 2)}


@lru_cache(maxsize=4)
def carriers(key: str = KEY) -> np.ndarray:
    """(1 + CODED_BITS + DECOYS, N, N): pilot, payload carriers and decoys, band-limited; the first
    1 + CODED_BITS orthonormal."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    f = np.fft.fftfreq(GRID, 1 / GRID)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    band = (radius >= BAND[0]) & (radius <= BAND[1])
    n = 1 + CODED_BITS + DECOYS
    # one random stream per pattern: the number of decoys never changes the mark's own carriers
    noise = np.stack([np.random.default_rng([seed, i]).standard_normal((2, GRID, GRID)) for i in range(n)])
    spectra = (noise[:, 0] + 1j * noise[:, 1]) * band
    raw = np.fft.ifft2(spectra).real.reshape(n, -1)  # (n, N*N), each in the band
    # the mark's carriers orthonormal (they stay in the band's span); the decoys only normalised,
    # as the band has too few dimensions for all of them
    q, _ = np.linalg.qr(raw[: 1 + CODED_BITS].T)
    decoys = raw[1 + CODED_BITS:] / np.linalg.norm(raw[1 + CODED_BITS:], axis=1, keepdims=True)
    return np.ascontiguousarray(np.concatenate([q.T, decoys]).reshape(n, GRID, GRID))


@lru_cache(maxsize=4)
def _carrier_features(key: str = KEY) -> np.ndarray:
    """(P, 2, N, N): the gradient field of each carrier, what the detector correlates with."""
    return _gradients(carriers(key))


def _gradients(x: np.ndarray) -> np.ndarray:
    """(..., h, w) -> (..., 2, h, w): forward differences along x and y (zero on the far edge)."""
    g = np.zeros((*x.shape[:-2], 2, *x.shape[-2:]))
    g[..., 0, :, :-1] = np.diff(x, axis=-1)
    g[..., 1, :-1, :] = np.diff(x, axis=-2)
    return g


def _features(y: np.ndarray) -> np.ndarray:
    """Still luma (..., h, w) -> robust gradients (..., 2, h, w). The world is flat colour with sharp
    edges: in flat parts the gradient is the mark's alone, and an edge (a step of up to 230 levels)
    would drown the mark's few levels, so edges are dropped, and so are their next pixels, where a
    resize or the codec smears the step into slopes that would pass for texture (after a 0.5x
    resize of a 64-pixel clip, most of the noise the decoder read). Texture is clipped to the
    mark's range rather than dropped, so that the mark's small push changes the features smoothly."""
    g = _gradients(y)
    edge = torch.from_numpy((np.abs(g) > EDGE).any(-3)).float().reshape(-1, 1, *y.shape[-2:])
    near_edge = F.max_pool2d(edge, 2 * NEAR_EDGE + 1, stride=1, padding=NEAR_EDGE).reshape(y.shape).numpy() > 0
    return np.where(near_edge[..., None, :, :], 0.0, np.clip(g, -CLIP, CLIP))


def video_id(frames: np.ndarray) -> int:
    """A 32-bit id from the content: the same video gets the same id, so a seed still fixes the file."""
    return int.from_bytes(hashlib.sha256(np.ascontiguousarray(frames).tobytes()).digest()[:4], "big")


def luma(frames: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (...) luma (BT.601 weights, as H.264's yuv420p uses)."""
    return frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114


def _resize(image: np.ndarray, h: int, w: int, mode: str = "bilinear") -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    antialias = mode == "bilinear" and (h < image.shape[0] or w < image.shape[1])
    return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=antialias)[0, 0].double().numpy()


@lru_cache(maxsize=8)
def _matched_features(key: str, h: int, w: int) -> np.ndarray:
    """Carrier features as they read in a video downsized to h x w and resampled back to the grid.
    Downsizing blurs the carriers' upper band unevenly, which mixes them; reading the blurred
    carriers instead of the sharp ones unmixes them (a 0.5x resize of a 64-pixel clip)."""
    x = torch.from_numpy(carriers(key)[: 1 + CODED_BITS]).float()[:, None]
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    x = F.interpolate(x, size=(GRID, GRID), mode="bilinear", align_corners=False)
    return _gradients(x[:, 0].double().numpy())


def _payload_signs(ident: int) -> np.ndarray:
    bits = to_bits(ident, ID_BITS)
    return 2.0 * conv_encode(np.concatenate([bits, crc16(bits)])) - 1.0


def embed(frames: np.ndarray, ident: int, strength: float = STRENGTH, key: str = KEY) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the same frames carrying `ident` (a 32-bit int) in the watermark."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if not 0 <= ident < 2 ** ID_BITS:
        raise ValueError(f"the watermark id must fit in {ID_BITS} bits, got {ident}")
    _, h, w, _ = frames.shape
    n = 1 + CODED_BITS
    basis, feats = carriers(key)[:n].reshape(n, -1), _carrier_features(key)[:n].reshape(n, -1)
    gram = feats @ feats.T
    sample = frames[still_frames(len(frames))]  # all the detector's median looks at

    def read(sample: np.ndarray) -> np.ndarray:  # what the decoder reads at the identity geometry
        return np.linalg.solve(gram, feats @ _features(_resize(still_luma(sample), GRID, GRID)).ravel())

    def apply(weights: np.ndarray, frames: np.ndarray) -> np.ndarray:
        mark = _resize((weights @ basis).reshape(GRID, GRID), h, w, mode="bicubic").astype(np.float32)
        out = np.empty_like(frames)
        for i in range(0, len(frames), 64):  # in chunks: a minute of video in float is gigabytes
            out[i: i + 64] = np.clip(np.rint(frames[i: i + 64] + mark[None, :, :, None]), 0, 255)
        return out

    target = np.concatenate([[math.sqrt(PILOT_SHARE)], math.sqrt((1 - PILOT_SHARE) / CODED_BITS) * _payload_signs(ident)])
    host_proj = read(sample)
    # improved spread spectrum: w = a * target - host_proj, with a chosen so |w| = strength * N,
    # i.e. an RMS of `strength` levels; the decoder then reads a * target, not the host
    # (on busy content cancelling everything would cost more than the budget: cancel part of it)
    energy = (strength * GRID) ** 2
    host_proj *= min(1.0, math.sqrt(MAX_CANCEL * energy / max(host_proj @ host_proj, 1e-12)))
    b = target @ host_proj
    a = b + math.sqrt(b * b - host_proj @ host_proj + energy)
    weights = a * target - host_proj
    # the gate, rounding and clipping make the read-out differ a little from the plan: correct it
    for _ in range(CORRECTIONS):
        weights += a * target - read(apply(weights, sample))
        weights *= math.sqrt(energy) / np.linalg.norm(weights)  # within the budget: PSNR holds
    return apply(weights, frames)


def still_frames(count: int) -> np.ndarray:
    """Indices of up to STILL_FRAMES evenly spaced frames out of count."""
    return np.unique(np.linspace(0, count - 1, min(count, STILL_FRAMES)).round().astype(int))


def still_luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> the per-pixel median luma (H, W) over up to STILL_FRAMES evenly spaced frames.
    The mark is static and the world's moving objects are not: the median keeps the one and drops
    the other, whose soft trails would otherwise pass the gradient gate as noise."""
    return np.median(luma(frames[still_frames(len(frames))].astype(np.float32)), axis=0).astype(np.float64)


def _zoom_pairs() -> list[tuple[float, float]]:
    zooms = np.exp(np.linspace(0.0, math.log(1 / MAX_CROP), ZOOM_STEPS))
    return [(float(z), float(z * a)) for z in zooms for a in ASPECTS]


def _search(still: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, list]:
    """Normalised correlation of each pattern's features with the video's at every zoom and offset.

    A crop of the central 80% shows the canonical grid zoomed 1.25x; each zoom pair (y, x) is
    tried, and each offset of the visible window at once by FFT. Returns (P, G) scores, the best
    over offsets for each pattern and zoom pair, and each zoom pair's (zy, zx, h, w, oy, ox) at
    the pilot's best offset."""
    n = feats.shape[0]
    spec = np.fft.rfft2(feats)  # (P, 2, N, N//2+1)
    spec_sq = np.fft.rfft2(feats ** 2)
    scores, geos = [], []
    for zy, zx in _zoom_pairs():
        h, w = min(GRID, round(GRID / zy)), min(GRID, round(GRID / zx))
        fy = np.zeros((2, GRID, GRID))
        fy[:, :h, :w] = _features(_resize(still, h, w))
        ones = np.zeros((2, GRID, GRID))
        ones[:, :h, :w] = 1.0
        # circular correlation sum_p fy[p] * feats[p + offset]; offsets where the window fits never wrap
        corr = np.fft.irfft2((np.conj(np.fft.rfft2(fy))[None] * spec).sum(1), s=(GRID, GRID))[:, : GRID - h + 1, : GRID - w + 1]
        energy = np.fft.irfft2((np.conj(np.fft.rfft2(ones))[None] * spec_sq).sum(1), s=(GRID, GRID))[:, : GRID - h + 1, : GRID - w + 1]
        r = corr / (np.sqrt(np.maximum(energy, 1e-12)) * (np.linalg.norm(fy) + 1e-9))
        flat = r.reshape(n, -1)
        scores.append(flat.max(1))
        oy, ox = np.unravel_index(int(flat[0].argmax()), r.shape[1:])
        geos.append((zy, zx, h, w, int(oy), int(ox)))
    return np.stack(scores, 1), geos


def _canonical(image: np.ndarray, geos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample an image onto the canonical grid under each geometry (zoom y, zoom x, offset y, offset x:
    the image spans rows [oy, oy + N / zy) and columns [ox, ox + N / zx) of the grid).
    Returns (G, 2, N, N) gated gradient features, zero outside the image, and that mask."""
    g = torch.from_numpy(np.asarray(geos, dtype=np.float64))
    u = torch.arange(GRID, dtype=torch.float64) + 0.5  # pixel centres
    gy = 2 * (u[None] - g[:, 2:3]) * g[:, 0:1] / GRID - 1  # (G, N), in grid_sample's [-1, 1]
    gx = 2 * (u[None] - g[:, 3:4]) * g[:, 1:2] / GRID - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (G, N, N, 2)
    x = torch.from_numpy(np.asarray(image, dtype=np.float64))[None, None].expand(len(g), 1, *image.shape)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    inside = ((gy.abs() <= 1)[:, :, None] & (gx.abs() <= 1)[:, None, :]).double()  # (G, N, N)
    mask = torch.zeros(len(g), 2, GRID, GRID, dtype=torch.float64)
    mask[:, 0, :, :-1] = inside[:, :, :-1] * inside[:, :, 1:]  # a gradient needs both of its pixels
    mask[:, 1, :-1, :] = inside[:, :-1, :] * inside[:, 1:, :]
    return torch.from_numpy(_features(y.numpy())) * mask, mask


def _refine(still: np.ndarray, pilot: np.ndarray, geo: tuple) -> np.ndarray:
    """Sub-pixel zoom and offset around a coarse geometry, by the pilot's correlation.
    The payload's high carriers lose much of their signal to a misalignment of half a pixel."""
    _, _, h, w, oy, ox = geo
    image = _resize(still, h, w)  # anti-aliased to about the window's size; warps stay near 1:1
    best = np.array([GRID / h, GRID / w, oy, ox], dtype=np.float64)
    pilot_t = torch.from_numpy(pilot)
    for zoom_span, shift_span, steps in ((0.015, 0.75, 7), (0.003, 0.15, 3)):
        zs = np.exp(np.linspace(-zoom_span, zoom_span, steps))
        ds = np.linspace(-shift_span, shift_span, steps)
        cand = np.array([[best[0] * z, best[1] * z, best[2] + dy, best[3] + dx] for z in zs for dy in ds for dx in ds])
        feats, mask = _canonical(image, cand)
        p = pilot_t[None] * mask
        score = (feats * p).sum((1, 2, 3)) / ((feats.square().sum((1, 2, 3)) * p.square().sum((1, 2, 3))).sqrt() + 1e-9)
        best = cand[int(score.argmax())]
    return best


def _decode_at(still: np.ndarray, feats: np.ndarray, geo: tuple, refine: bool, paths: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the payload at one coarse geometry: refine it, least squares over the visible window,
    then list Viterbi. Returns the `paths` likeliest payloads (paths, PAYLOAD_BITS), likeliest
    first, and the geometry used."""
    _, _, h, w, oy, ox = geo
    fine = _refine(still, feats[0], geo) if refine else np.array([GRID / h, GRID / w, oy, ox], dtype=np.float64)
    f, mask = _canonical(_resize(still, geo[2], geo[3]), fine[None])
    window = (torch.from_numpy(feats) * mask).reshape(feats.shape[0], -1).numpy()  # (P, 2*N*N)
    # the carriers' gradients are not orthogonal (and less so in a crop): solve for all at once
    gram = window @ window.T + 1e-6 * np.eye(window.shape[0])
    weights = np.linalg.solve(gram, window @ f.reshape(-1).numpy())
    return list_viterbi_decode(weights[1: 1 + CODED_BITS], PAYLOAD_BITS, paths), fine


def _gumbel_p(x: float, null: np.ndarray) -> float:
    """Upper-tail p-value of a maximum under a Gumbel law fitted to the decoys' maxima (moments).
    The Gumbel tail is heavier than the true one of a maximum of near-Gaussian scores: conservative."""
    beta = max(float(null.std(ddof=1)), 1e-9) * math.sqrt(6) / math.pi
    mu = float(null.mean()) - 0.5772156649 * beta
    return float(-math.expm1(-math.exp(-(x - mu) / beta)))


def _student_p(x: float, null: np.ndarray) -> float:
    """Upper-tail p-value of one more draw from the law of the decoys' scores (Student's t
    prediction interval: the decoys' mean and spread are themselves estimates)."""
    from scipy.stats import t

    n = len(null)
    scale = max(float(null.std(ddof=1)), 1e-9) * math.sqrt(1 + 1 / n)
    return float(t.sf((x - float(null.mean())) / scale, df=n - 1))


def detect_still(still: np.ndarray, key: str = KEY) -> Detection:
    """Look for the mark in a video's still luma (H, W): see still_luma.

    Two pilot tests, Bonferroni-combined: at the identity geometry (the video as written, or
    only resized), where no search dilutes the score and the embedder cancelled the host's pull;
    and the best over the crop search. The payload is read at the identity and at the search's
    best geometries until its CRC checks out."""
    feats = _carrier_features(key)
    still = np.asarray(still, dtype=np.float64)
    scores, geos = _search(still, np.concatenate([feats[:1], feats[1 + CODED_BITS:]]))
    # the first zoom pair is 1:1, where the window is the whole grid: one offset, the identity
    p_identity = _student_p(scores[0, 0], scores[1:, 0])
    best = scores.max(1)  # each pattern's best score over all geometries
    p_search = _gumbel_p(best[0], best[1:])
    p_pilot = min(1.0, 2 * min(p_identity, p_search))
    z = float((best[0] - best[1:].mean()) / max(best[1:].std(ddof=1), 1e-9))
    # the identity as is and refined (a resize back and forth shifts it by a fraction of a pixel)
    matched = _matched_features(key, *still.shape) if min(still.shape) < GRID else feats
    candidates = [(0, False, matched), (0, True, matched)]
    candidates += [(int(g), True, feats) for g in np.argsort(-scores[0])[: DECODE_TRIES - 2]]
    ident, first_guess, examined = None, None, 0
    for g, refine, f in candidates:
        # each payload tried is a chance for a wrong id: a list only where the pilot finds the mark,
        # not at the identity of a cropped video or anywhere in a clean one (there it reads noise)
        paths = PATHS if (p_identity if g == 0 else p_search) < LIST_P else 1
        payloads, geo = _decode_at(still, f[: 1 + CODED_BITS], geos[g], refine, paths)
        first_guess = from_bits(payloads[0, :ID_BITS]) if first_guess is None else first_guess
        for bits in payloads:
            examined += 1
            if np.array_equal(crc16(bits[:ID_BITS]), bits[ID_BITS:]):
                ident = from_bits(bits[:ID_BITS])
                break
        if ident is not None:
            break
    # on a clean video each payload examined checks out by chance (2^-16), so one of the first
    # `examined` does with a chance of at most examined * 2^-16; the pilot and the payload carriers
    # are orthogonal, so on a clean video the two tests are independent
    p = p_pilot * (examined * 2.0 ** -CRC_BITS if ident is not None else 1.0)
    return Detection(p < DETECT_P, ident if p < DETECT_P else None, 1.0 - p, p, z, tuple(float(v) for v in geo),
                     ident if ident is not None else first_guess)


def detect(frames: np.ndarray, key: str = KEY) -> Detection:
    """Look for the mark in (T, H, W, 3) uint8 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    return detect_still(still_luma(frames), key)
