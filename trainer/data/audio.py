"""The sound track of a generated clip, rendered from the same action and timing as its frames.

What is heard follows the physics of the action: ``open`` starts with a latch click and then
creaks while the part moves, ``close`` creaks and ends with an impact as the part shuts,
``pick`` starts with a scrape as the object leaves the table and ``put`` ends with the impact
as it lands. The object's material (one per noun) sets the ring of every impact and the band
of its friction noise. Onsets follow :func:`~trainer.data.synthetic.action_timeline`, so the
sound happens while the frames show the motion. Loudness and pitch vary per clip, some
actions make no sound at all, and kitchen ambience, mains hum and unrelated knocks and
rustles make the track informative but not a give-away. The model input is a
log-power spectrogram in frequency bands, ``(AUDIO_BANDS, AUDIO_STEPS)``.
"""

from __future__ import annotations

import numpy as np

from egoedge.trainer.data.vocab import LABELS

AUDIO_RATE = 8000  # Hz; one clip spans one second
AUDIO_BANDS = 32
AUDIO_STEPS = 64
_N_FFT = 256

# Material of each noun: (modal frequencies in Hz, impact decay in s, friction band in Hz).
MATERIALS: dict[str, tuple[tuple[float, ...], float, tuple[float, float]]] = {
    "drawer": ((180.0, 420.0), 0.05, (200.0, 700.0)),  # wood
    "cup": ((1200.0, 2900.0), 0.25, (900.0, 1800.0)),  # ceramic
    "knife": ((2500.0, 3700.0), 0.35, (1800.0, 3500.0)),  # steel
    "box": ((110.0, 260.0), 0.03, (100.0, 400.0)),  # cardboard
}
# The action moves between these normalised times (trainer.data.synthetic.action_timeline).
_ACT_START, _ACT_END = 0.15, 0.85


def _impact(t: np.ndarray, onset: float, modes: tuple[float, ...], decay: float,
            rng: np.random.Generator) -> np.ndarray:
    dt = t - onset
    on = dt >= 0
    ring = sum(rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * dt) for f in modes)
    return np.where(on, ring * np.exp(-np.clip(dt, 0, None) / decay), 0.0)


def _band_noise(n: int, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1.0 / AUDIO_RATE)
    spec[(freqs < band[0]) | (freqs > band[1])] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-8)


def render_waveform(label: int, rng: np.random.Generator) -> np.ndarray:
    """One second of float32 audio at :data:`AUDIO_RATE` for an action of class ``label``."""
    verb, noun = LABELS[label].split("_")
    modes, decay, band = MATERIALS[noun]
    # The same object never sounds quite the same, and a gentle hand is barely heard.
    pitch = rng.uniform(0.8, 1.25)
    modes = tuple(f * pitch for f in modes)
    band = (band[0] * pitch, band[1] * pitch)
    loud = rng.uniform(0.1, 1.0)
    n = AUDIO_RATE
    t = np.arange(n) / AUDIO_RATE
    start = _ACT_START + rng.uniform(-0.03, 0.03)
    end = _ACT_END + rng.uniform(-0.03, 0.03)
    wave = np.zeros(n)
    moving = ((t >= start) & (t <= end)).astype(float)
    if verb in ("open", "close"):
        # Friction while the part moves, swelling with its speed (fast in the middle).
        envelope = moving * np.sin(np.pi * np.clip((t - start) / (end - start), 0, 1)) * rng.uniform(0.1, 0.4)
        wave += envelope * _band_noise(n, band, rng)
        if verb == "close":  # the part shuts
            wave += _impact(t, end, modes, decay, rng)
        elif rng.random() < 0.8:  # a latch or a seal lets go
            wave += 0.4 * _impact(t, start, modes, 0.3 * decay, rng)
    elif verb == "pick":
        if rng.random() < 0.7:  # the object scrapes off the table as it leaves it
            scrape = (t >= start) & (t <= start + 0.08)
            wave += 0.5 * scrape * _band_noise(n, (band[0], band[1] * 1.5), rng)
    else:  # put: it lands
        wave += _impact(t, end, modes, decay, rng)
    wave *= loud
    # Ambience: broadband room noise, mains hum, and other things happening in the kitchen.
    wave += rng.uniform(0.02, 0.15) * rng.normal(size=n)
    wave += rng.uniform(0.0, 0.05) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
    for _ in range(rng.poisson(0.8)):
        other = MATERIALS[str(rng.choice(list(MATERIALS)))]
        when = rng.uniform(0, 1)
        if rng.random() < 0.5:
            wave += rng.uniform(0.1, 0.6) * _impact(t, when, other[0], other[1], rng)
        else:
            burst = (t >= when) & (t <= when + rng.uniform(0.05, 0.3))
            wave += rng.uniform(0.05, 0.3) * burst * _band_noise(n, other[2], rng)
    return (wave * rng.uniform(0.5, 1.5)).astype(np.float32)


def _band_matrix() -> np.ndarray:
    """``(AUDIO_BANDS, N_FFT/2+1)`` triangular filters on a log-frequency axis (mel-like)."""
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / AUDIO_RATE)
    edges = np.geomspace(60.0, AUDIO_RATE / 2, AUDIO_BANDS + 2)
    bank = np.zeros((AUDIO_BANDS, len(freqs)), np.float32)
    for b in range(AUDIO_BANDS):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        bank[b] = np.clip(np.minimum(rise, fall), 0, None)
    return bank / np.maximum(bank.sum(1, keepdims=True), 1e-8)


def spectrogram(wave: np.ndarray) -> np.ndarray:
    """Log band power ``(AUDIO_BANDS, AUDIO_STEPS)`` float32 of a one-second waveform (Hann STFT)."""
    hop = len(wave) // AUDIO_STEPS
    padded = np.pad(wave, (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    starts = np.arange(AUDIO_STEPS) * hop
    frames = np.stack([padded[s:s + _N_FFT] for s in starts]) * np.hanning(_N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(_band_matrix() @ power.T + 1e-6).astype(np.float32)


def render_audio(label: int, rng: np.random.Generator) -> np.ndarray:
    """The spectrogram the audio teacher reads for one clip of class ``label``."""
    return spectrogram(render_waveform(label, rng))
