"""Compression-based anomaly detection for one baseline and one window (API-AND-CBAD.md §2.3-2.8).

Three deliberate differences from the reference, where the documentation leaves room, each measured
(README, "Detection engine"):

* The permutation test's statistic is the window's *conditional compressed cost*: the sum over
  window events of C(event | reference), each event compressed with the older half of the
  baseline as a zstd dictionary. The newer half of the baseline and the window are scored once
  and are exchangeable when nothing changed, so a permutation is a random relabelling of those
  scores: no compression per permutation, which made detection about twice as fast
  (benchmarks/engine.py). The reference permutes NCD over the joined buffers, where a burst of new
  but repetitive events compresses against itself and hides: 15 scanner requests in a 50-event
  window were found in 2 of 10 windows that way, and 5 in a window in 6 of 6 this way.
* The statistic also sees *how often* events occur. Compressing each event alone against the
  reference cannot: twenty failed logins in a window cost what one does, and when the reference
  holds a failed login or two, each costs about what a product page costs. So every event gets
  three scores, each divided by its spread over the pool and summed: its conditional compressed
  cost (what it contains), its *rarity* (its code length under an order-0 model of whole events
  fitted to the reference, -log2 of its share there) and its *frequency gain* (log2 of its share
  of the pool over its share of the reference: positive for events that became more common, such
  as twenty copies of one failed login). The last two depend only on the reference and on the
  pool as a whole, so a relabelling of the pool still draws from the same scores. On
  ``benchmarks/quality.py`` (40 seeds, the alarm rule then: 2 confirmations at p <= 0.02) they
  lifted credential stuffing from 32 to 40 of 40 episodes and latency spikes from 32 to 40. They also
  let one rare event weigh on every detection that sees it, which raised chance alarms in long quiet
  runs; the alarm rule's defaults absorb that (:mod:`driftlock.alarms`).
* The *effect sizes* the thresholds are compared with (NCD for ``ncd_threshold`` and the composite
  score, compression-ratio change, entropy change) are measured size-matched: the window against
  each window-sized slice of the baseline, averaged. Compared directly, a 50-event window and a
  400-event baseline of the *same* traffic score NCD ≈ 0.9 and a compression-ratio drop of ≈ 30%,
  because compressed size grows sub-linearly, and the composite branch of the rule fires for most
  windows. The slices end on multiples of the window size counted in the stream, so a baseline that
  moves a hop at a time keeps them, and their size and entropy are computed once.

Cost is dominated by the permutation test; it stops as soon as the decision can no longer change
(the decision is monotone in p, so it is fixed once it agrees at both ends of the p interval still
possible), or, for ordinary windows, once EXCEEDANCES permutations were at least as extreme as the
window and p is clearly above the threshold, or, for clear anomalies, when none of the first
MIN_REPORTED_PERMUTATIONS reached the window.
"""

from __future__ import annotations

import functools
import gzip
import math
import random
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zstandard

from driftlock.engine.settings import DetectionSettings

__all__ = ["Detection", "analyse", "compressed_size"]

CR_DROP = -0.15
ENTROPY_JUMP = 0.20
COMPOSITE_PASS = 0.60
NOVELTY_PASS = 1.10
MAX_SLICES = 4
"""Window-sized baseline slices the effect sizes are averaged over (8 gave the same decisions on
benchmarks/engine.py and benchmarks/quality.py, at half again the cost)."""
MIN_REPORTED_PERMUTATIONS = 100
SCORE_SCALE = 1000
"""Combined scores are whole numbers (score × this), so sums compare exactly in any order."""
EXCEEDANCES = 5
"""Stop permuting once this many permutations scored at least the observed statistic and count / done
is at least twice the p-value threshold (the stopping rule of Besag & Clifford's sequential Monte Carlo
p-values, 1991, kept away from the threshold): an ordinary window is settled after a few dozen
permutations instead of running until p > threshold is certain. Windows near the threshold still run
until the decision is certain."""

_local = threading.local()


def _zstd() -> zstandard.ZstdCompressor:
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=3)
    return compressor


def compressor_for(name: str) -> Callable[[bytes], int]:
    """C(x): compressed length in bytes. lz4 and openzl are not bundled and run as zstd."""
    if name == "zlab":
        return lambda data: len(zlib.compress(data))
    if name == "gzip":
        return lambda data: len(gzip.compress(data, mtime=0))
    return lambda data: len(_zstd().compress(data))


def compressed_size(data: bytes) -> int:
    return len(_zstd().compress(data))


def entropy(data: bytes) -> float:
    """Shannon entropy over byte frequencies, bits per byte.

    Counts by deleting one byte value at a time (``bytes.translate`` runs in C and the data shrinks
    as it goes): three times faster than ``set`` plus ``count`` on event text, where it was half of a
    detection's time."""
    n = len(data)
    total = 0.0
    while data:
        rest = data.translate(None, data[:1])
        p = (len(data) - len(rest)) / n
        total -= p * math.log2(p)
        data = rest
    return total


def _join(events: Sequence[bytes]) -> bytes:
    """The events as one buffer, each followed by a newline (§2.1)."""
    return b"\n".join(events) + b"\n" if events else b""


def event_scores(reference: Sequence[bytes], pool: Counter[bytes]) -> dict[bytes, tuple[int, float, float]]:
    """(conditional cost, rarity, frequency gain) of each distinct event of the pool.

    * conditional cost: C(event | reference), its compressed bytes with the reference as a zstd
      dictionary;
    * rarity: -log2 of its share of the reference, in bits;
    * frequency gain: log2 of its share of the pool over its share of the reference, in bits.

    Shares are smoothed by half an occurrence (Krichevsky-Trofimov), so an event the reference
    never saw is rarer than one it saw once. Computed once per distinct event: traffic repeats
    itself, and a 250-event pool of ordinary requests holds a few dozen distinct events."""
    dictionary = zstandard.ZstdCompressionDict(_join(reference), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    compress = zstandard.ZstdCompressor(level=3, dict_data=dictionary).compress
    in_reference = Counter(reference)
    total = len(reference) + 0.5 * (len(in_reference) + 1)
    scale = len(reference) / pool.total()
    log2 = math.log2
    scores = {}
    for event, count in pool.items():
        seen = in_reference.get(event, 0) + 0.5
        scores[event] = (len(compress(event)), log2(total / seen), log2((count + 0.5) * scale / seen))
    return scores


def _unit(values: Sequence[float], weights: Sequence[int]) -> float:
    """SCORE_SCALE / the standard deviation of ``values`` counted ``weights`` times (SCORE_SCALE if 0)."""
    n = sum(weights)
    mean = sum(v * w for v, w in zip(values, weights, strict=True)) / n
    spread = math.sqrt(sum(w * (v - mean) ** 2 for v, w in zip(values, weights, strict=True)) / n)
    return SCORE_SCALE / spread if spread else SCORE_SCALE


def pool_scores(reference: Sequence[bytes], pool: Sequence[bytes]) -> list[int]:
    """Each pool event's three scores (:func:`event_scores`) in units of their spread over the pool,
    summed, as whole numbers (× SCORE_SCALE)."""
    in_pool = Counter(pool)
    scores = event_scores(reference, in_pool)
    weights = [in_pool[e] for e in scores]
    units = [_unit([s[i] for s in scores.values()], weights) for i in range(3)]
    combined = {e: round(c * units[0] + r * units[1] + g * units[2]) for e, (c, r, g) in scores.items()}
    return [combined[e] for e in pool]


def _ncd(c_a: int, c_b: int, c_ab: int) -> float:
    high = max(c_a, c_b)
    if high == 0:
        return 0.0
    return min(1.0, max(0.0, (c_ab - min(c_a, c_b)) / high))


def _slices(baseline: Sequence[bytes], size: int, start: int) -> list[bytes]:
    """Window-sized slices of the baseline, newest first, at most MAX_SLICES, ending on multiples of
    ``size`` counted in the stream (``start`` is the stream position of the baseline's first event)."""
    out: list[bytes] = []
    end = len(baseline) - (start + len(baseline)) % size
    while end - size >= 0 and len(out) < MAX_SLICES:
        out.append(_join(baseline[end - size : end]))
        end -= size
    return out or [_join(baseline)]


@functools.lru_cache(maxsize=256)
def _slice_figures(data: bytes, compressor: str) -> tuple[int, float]:
    """C(slice) and the slice's byte entropy. Cached: a stream's slices stay put while its baseline
    moves a hop at a time, so consecutive detections share all but one of them."""
    return compressor_for(compressor)(data), entropy(data)


@dataclass(frozen=True)
class Detection:
    """The figures and decision of one detection (snake_case metrics as the Rust core names them)."""

    is_anomaly: bool
    ncd: float
    p_value: float
    confidence_level: float
    baseline_compression_ratio: float
    window_compression_ratio: float
    compression_ratio_change: float
    baseline_entropy: float
    window_entropy: float
    entropy_change: float
    composite_score: float
    conditional_novelty: float
    is_statistically_significant: bool
    permutation_count: int
    strongest_signal: str

    def metrics(self) -> dict[str, float | int | bool]:
        return {
            "ncd": round(self.ncd, 6),
            "p_value": round(self.p_value, 6),
            "confidence_level": round(self.confidence_level, 6),
            "baseline_compression_ratio": round(self.baseline_compression_ratio, 6),
            "window_compression_ratio": round(self.window_compression_ratio, 6),
            "compression_ratio_change": round(self.compression_ratio_change, 6),
            "baseline_entropy": round(self.baseline_entropy, 6),
            "window_entropy": round(self.window_entropy, 6),
            "entropy_change": round(self.entropy_change, 6),
            "composite_score": round(self.composite_score, 6),
            "conditional_novelty": round(self.conditional_novelty, 6),
            "is_anomaly": self.is_anomaly,
            "is_statistically_significant": self.is_statistically_significant,
            "permutation_count": self.permutation_count,
        }


def confidence(p: float, ncd: float) -> float:
    """§2.6: 1 − p when significant, else a blend of NCD and p."""
    if p < 0.05:
        return 1.0 - p
    if ncd > 0.5:
        return min(0.75 * ncd, 0.85)
    return min(1.0, max(0.0, 0.6 * (1.0 - p) + 0.4 * ncd))


def analyse(
    baseline: Sequence[bytes], window: Sequence[bytes], settings: DetectionSettings, *, start: int = 0
) -> Detection:
    """Compare ``window`` with ``baseline`` (tokenized event bytes) and decide (§2.7). ``start`` is
    the stream position of the baseline's first event: it aligns the baseline slices."""
    size = compressor_for(settings.compressor)
    w_size = len(window)
    w_bytes = _join(window)
    b_bytes = _join(baseline)
    c_w = size(w_bytes)
    c_b = size(b_bytes)
    c_bw = size(b_bytes + w_bytes)
    novelty = max(0.0, (c_bw - c_b) / c_w) if c_w else 0.0

    slices = _slices(baseline, w_size, start)
    figures = [_slice_figures(s, settings.compressor) for s in slices]
    observed = sum(_ncd(c_s, c_w, size(s + w_bytes)) for s, (c_s, _) in zip(slices, figures, strict=True))
    observed /= len(slices)
    cr_b = sum(len(s) / max(1, c_s) for s, (c_s, _) in zip(slices, figures, strict=True)) / len(slices)
    cr_w = len(w_bytes) / max(1, c_w)
    cr_change = (cr_w - cr_b) / cr_b if cr_b else 0.0
    h_b = sum(h for _, h in figures) / len(figures)
    h_w = entropy(w_bytes)
    h_change = (h_w - h_b) / max(h_b, 0.001)

    ncd_pass = observed >= settings.ncd_threshold
    drop = cr_change <= CR_DROP
    jump = h_change >= ENTROPY_JUMP
    novelty_pass = novelty >= NOVELTY_PASS

    def composite(p: float) -> float:
        return 0.5 * observed + 0.25 * (1.0 - p) + 0.25 * max(0.0, -cr_change)

    def decide(p: float) -> bool:
        p_pass = p <= settings.p_value_threshold
        composite_pass = composite(p) >= COMPOSITE_PASS
        strong = ncd_pass and p_pass
        votes = drop + jump + composite_pass + novelty_pass
        return strong or (composite_pass and (votes >= 2 or ncd_pass)) or (novelty_pass and (votes >= 2 or strong))

    total = settings.permutation_count
    # the test also settles which side of these p-values it is on (the incident rule confirms at one)
    also = [level for level in (settings.confirm_p_value,) if level is not None]
    count = done = 0
    if decide(0.0):  # otherwise no p-value could make this an anomaly: skip the test
        # The permutation test's reference is the older half of the baseline; the newer half and the
        # window (the pool) are scored against it once, and are exchangeable under "nothing changed".
        reference, pool = baseline[: len(baseline) // 2], [*baseline[len(baseline) // 2 :], *window]
        scores = pool_scores(reference, pool)
        statistic = sum(scores[-w_size:])
        rng = random.Random(settings.seed)
        floor = min(total, MIN_REPORTED_PERMUTATIONS)
        while done < total:
            count += sum(rng.sample(scores, w_size)) >= statistic  # a random relabelling of the pool
            done += 1
            if count >= EXCEEDANCES and count >= 2 * settings.p_value_threshold * done:
                break  # clearly not significant (a futility stop: it can only say "no anomaly")
            if done == floor and count == 0 and decide(1 / (done + 1)):
                break  # not one permutation reached the window: p < 1 / floor, an anomaly either way
            low, high = count / total, (count + total - done) / total
            fixed = decide(low)
            settled = all((low <= level) == (high <= level) for level in also)
            if fixed == decide(high) and settled and (not fixed or done >= floor):
                break
    # count/done lies between the bounds that fixed the decision, so it decides the same way
    p = count / done if done else 1.0
    is_anomaly = decide(p)

    margins = {
        "novelty": novelty / NOVELTY_PASS,
        "distance": observed / max(settings.ncd_threshold, 1e-9),
        "compression": (-cr_change) / -CR_DROP,
        "entropy": h_change / ENTROPY_JUMP,
    }
    return Detection(
        is_anomaly=is_anomaly,
        ncd=observed,
        p_value=p,
        confidence_level=confidence(p, observed),
        baseline_compression_ratio=cr_b,
        window_compression_ratio=cr_w,
        compression_ratio_change=cr_change,
        baseline_entropy=h_b,
        window_entropy=h_w,
        entropy_change=h_change,
        composite_score=composite(p),
        conditional_novelty=novelty,
        is_statistically_significant=p < settings.p_value_threshold,
        permutation_count=done,
        strongest_signal=max(margins, key=lambda k: margins[k]),
    )
