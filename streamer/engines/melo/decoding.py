"""From melo's front-end ids to audio: the forward pass to the latent, then the decoder in windows.

After the front end, the text encoder, duration predictors and flow run once per sentence (the steps
of ``SynthesizerTrn.infer``) to the latent z. With ``streaming`` the decoder runs on windows of z,
each decoded with ``overlap_frames`` of context on both sides and joined to the previous one by a
raised-cosine crossfade over the middle quarter of the span they share. The decoder sees about 10
frames either way, so with 16 frames of context the joins are exact to float rounding. The first
window is ``window_frames`` long, so the first block leaves after one small decode rather than the
whole sentence; later windows are as large as the audio already yielded covers at the measured decode
speed (up to ``max_window_frames``, see :class:`Pacer`), so the stream stays ahead of playback where
the machine allows. :func:`decode_batch` decodes several sentences of one model in one pass (for
GPUs: on a CPU it is slower than one after the other).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from streamer.config import MeloSettings
from streamer.engines.base import ShouldStop

from .loading import Model

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class Prepared:
    """One sentence through melo's front end: symbol, tone and language ids plus BERT features."""

    phones: torch.Tensor
    tones: torch.Tensor
    languages: torch.Tensor
    bert: torch.Tensor  # [1024, n]: zeros except for Chinese
    ja_bert: torch.Tensor  # [768, n]: the other languages' features


def latent(
    model: Model, items: list[Prepared], g: torch.Tensor, length_scale: torch.Tensor, settings: MeloSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps of SynthesizerTrn.infer up to the decoder, for a padded batch: z [b, c, t] and
    each item's frame count. ``g`` is [b, gin, 1], ``length_scale`` [b, 1, 1]."""
    import melo.commons as commons
    import torch

    net, device = model.net, model.device
    size, longest = len(items), max(len(item.phones) for item in items)
    x = torch.zeros(size, longest, dtype=torch.long)
    tones, languages = torch.zeros_like(x), torch.zeros_like(x)
    bert, ja_bert = torch.zeros(size, 1024, longest), torch.zeros(size, 768, longest)
    for row, item in enumerate(items):
        n = len(item.phones)
        x[row, :n], tones[row, :n], languages[row, :n] = item.phones, item.tones, item.languages
        bert[row, :, :n], ja_bert[row, :, :n] = item.bert, item.ja_bert
    lengths = torch.tensor([len(item.phones) for item in items], dtype=torch.long)
    with torch.inference_mode():
        x, tones, languages, bert, ja_bert, lengths = (
            t.to(device) for t in (x, tones, languages, bert, ja_bert, lengths)
        )
        g = g.to(device)
        h, m_p, logs_p, x_mask = net.enc_p(
            x, lengths, tones, languages, bert, ja_bert, g=None if net.use_vc else g
        )
        logw = net.dp(h, x_mask, g=g) * (1 - settings.sdp_ratio)
        if settings.sdp_ratio > 0:
            sdp = net.sdp(h, x_mask, g=g, reverse=True, noise_scale=settings.noise_scale_w)
            logw = sdp * settings.sdp_ratio + logw
        w = torch.exp(logw) * x_mask * length_scale.to(device)
        w_ceil = torch.ceil(w)
        y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
        y_mask = torch.unsqueeze(commons.sequence_mask(y_lengths, None), 1).to(x_mask.dtype)
        attn_mask = torch.unsqueeze(x_mask, 2) * torch.unsqueeze(y_mask, -1)
        attn = commons.generate_path(w_ceil, attn_mask)
        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
        z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * settings.noise_scale
        z = net.flow(z_p, y_mask, g=g, reverse=True) * y_mask
    return z, y_lengths.cpu()


def decode(model: Model, z: torch.Tensor, g: torch.Tensor) -> np.ndarray:
    """The audio of z [1, c, t] in one decoder pass."""
    import torch

    with torch.inference_mode():
        audio = model.net.dec(z, g=g.to(z.device))
    return audio[0, 0].float().cpu().numpy()


def decode_windows(
    model: Model, z: torch.Tensor, g: torch.Tensor, pacer: Pacer, should_stop: ShouldStop, context: int
) -> Iterator[np.ndarray]:
    """Decode z [1, c, t] in windows with context, joined by crossfades (module docstring)."""
    frames, hop = z.shape[-1], model.hop
    half = (context // 4) * hop  # the crossfade spans ``half`` samples either side of a join
    start = 0
    carry: np.ndarray | None = None  # the previous window's samples around the coming join
    while start < frames:
        if start > 0 and should_stop():
            return
        window = pacer.window()
        end = min(frames, start + window)
        if frames - end < window // 2:
            end = frames  # no stub of a last window
        low, high = max(0, start - context), min(frames, end + context)
        began = time.perf_counter()
        audio = decode(model, z[:, :, low:high], g)
        pacer.decoded(high - low, time.perf_counter() - began)
        first = start * hop - (half if start > 0 else 0) - low * hop
        last = end * hop + (half if end < frames else 0) - low * hop
        piece = audio[first:last]
        if carry is not None:
            fade = fade_in(len(carry))
            piece[: len(carry)] = carry * (1 - fade) + piece[: len(carry)] * fade
        carry = None
        if end < frames and half:
            carry, piece = piece[-2 * half :].copy(), piece[: -2 * half]
        pacer.sent(len(piece))
        yield piece
        start = end


def decode_batch(
    model: Model, z: torch.Tensor, lengths: torch.Tensor, g: torch.Tensor, context: int
) -> list[np.ndarray]:
    """Each item's audio from a padded batch z [b, c, t] of ``lengths`` frames, in one decoder pass."""
    import torch

    with torch.inference_mode():
        audio = model.net.dec(z, g=g.to(z.device))[:, 0].float().cpu().numpy()
    hop, longest = model.hop, z.shape[-1]
    # Past its end, a shorter item's padding is not silence to the decoder (its first layer adds a
    # bias and the speaker term), so its last frames are decoded again alone, with context.
    tail = max(context, 1)
    results = []
    for row, length in enumerate(int(n) for n in lengths):
        item = audio[row, : length * hop].copy()
        if length < longest:
            low = max(0, length - 2 * tail)
            redo = decode(model, z[row : row + 1, :, low:length], g[row : row + 1])
            if low == 0:
                item = redo
            else:
                item[-tail * hop :] = redo[-tail * hop :]
        results.append(item)
    return results


@cache
def fade_in(samples: int) -> np.ndarray:
    # Raised cosine: fade_in + fade_out == 1, right for joining two copies of the same signal.
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(samples) + 0.5) / samples)
    return ramp.astype(np.float32)


class Pacer:
    """Sizes the decoder windows of one synthesis so that, once audio flows, the audio already
    yielded lasts while the next window decodes.

    The first window is ``first`` frames (time to first audio). Each later one is the largest the
    audio still ahead of the listener covers (at the decode speed last measured, with a margin),
    up to ``largest``; where even ``first`` frames would not fit, it doubles instead, so the stall
    that cannot be avoided happens once rather than at every join.
    """

    _MARGIN = 0.8

    def __init__(
        self,
        sample_rate: int,
        first: int,
        largest: int,
        context: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.first, self.largest = first, max(first, largest)
        self.context = context  # frames decoded on each side beyond a window's span
        self._sample_rate, self._clock = sample_rate, clock
        self._started: float | None = None  # when the first block was handed over
        self._sent_s = 0.0
        self._seconds_per_frame: float | None = None
        self._last = first

    def window(self) -> int:
        if self._started is None or self._seconds_per_frame is None:
            size = self.first
        else:
            ahead = self._sent_s - (self._clock() - self._started)
            fit = int(self._MARGIN * ahead / self._seconds_per_frame) - 2 * self.context
            size = min(fit, self.largest) if fit >= self.first else min(2 * self._last, self.largest)
        self._last = size
        return size

    def decoded(self, frames: int, seconds: float) -> None:
        self._seconds_per_frame = seconds / max(frames, 1)

    def sent(self, samples: int) -> None:
        if self._started is None:
            self._started = self._clock()
        self._sent_s += samples / self._sample_rate
