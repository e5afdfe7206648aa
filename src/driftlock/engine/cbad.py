"""Compression-based anomaly detection for one baseline and one window (API-AND-CBAD.md §2.3-2.8).

Deliberate differences from the reference, where the documentation leaves room, each measured on
``benchmarks/quality.py`` and ``benchmarks/engine.py`` (figures in the README, "Detection engine"):

* The permutation test scores each event once, not each permutation. The older half of the
  baseline is the *reference*; the newer half and the window (the *pool*) are exchangeable when
  nothing changed, so a permutation is a random relabelling of the pool's scores, and no
  compression runs per permutation. (The reference permutes NCD over joined buffers, where a burst
  of new but repetitive events compresses against itself and hides.)
* Every pool event has four scores, all functions of the reference and of the pool as a whole, so
  relabelling the pool still draws from the same scores: its *conditional compressed cost*
  C(event | reference), the reference as a zstd dictionary (what it contains); its *rarity*, -log2
  of its share of the reference (an order-0 code length over whole events); its *frequency gain*,
  log2 of its share of the pool over its share of the reference (twenty copies of one failed login
  cost what one does to a compressor, not to this); and for JSON events its *field surprise*
  (:mod:`.surprise`: its most unusual field value, for raw events that are all different and where
  one field taking a new value is all that changed).
* The statistic is the largest of the four window sums, each centred and in units of its spread
  (:class:`_MaxStatistic`), so a change that shows in one score is not drowned by the three that
  did not change.
* Consecutive events of real traffic are not exchangeable: visitors come in sessions, and a
  window of them varies more than a random relabelling of the pool predicts, so ordinary windows
  reach p = 0. Each score's window sum is deflated by the dependence of consecutive events that the
  pool shows (:func:`inflation`, a design effect as in cluster sampling); and the statistic, reported
  in units of its spread under relabelling (``Detection.statistic``), by how much wider the caller
  found the stream's ordinary windows run (``DetectionSettings.dependence``). On traffic of
  independent events both are about 1 and the test is about the plain permutation test.
* Every branch of the decision rule requires significance (p at or below the threshold): the
  reference's composite branch does not, and windows of varied traffic then pass it on their NCD
  alone, which no calibration of p can bound.
* The *effect sizes* the thresholds are compared with (NCD for ``ncd_threshold`` and the composite
  score, compression-ratio change, entropy change) are measured size-matched: the window against
  each window-sized slice of the baseline, averaged. Compared directly, a window and a baseline
  eight times its size of the *same* traffic look far apart, because compressed size grows
  sub-linearly. The slices end on multiples of the window size counted in the stream, so a
  baseline that moves a hop at a time keeps them, and their size and entropy are computed once.

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
from operator import itemgetter

import zstandard

from driftlock.engine.settings import DetectionSettings
from driftlock.engine.surprise import field_surprise
from driftlock.engine.tokenize import coarse

__all__ = ["Detection", "analyse", "compressed_size", "inflation"]

CR_DROP = -0.15
ENTROPY_JUMP = 0.20
COMPOSITE_PASS = 0.60
NOVELTY_PASS = 1.10
MAX_SLICES = 4
"""Window-sized baseline slices the effect sizes are averaged over (8 gave the same decisions on
benchmarks/engine.py and benchmarks/quality.py, at half again the cost)."""
MIN_REPORTED_PERMUTATIONS = 100
DEPENDENCE_BLOCK = 10
"""Consecutive events whose sums measure a window's dependence (:func:`inflation`): about a visit."""
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


def _units(values: Sequence[float], weights: Sequence[int]) -> tuple[float, float] | None:
    """The mean and standard deviation of ``values`` counted ``weights`` times (None if they never vary)."""
    n = sum(weights)
    mean = sum(v * w for v, w in zip(values, weights, strict=True)) / n
    spread = math.sqrt(sum(w * (v - mean) ** 2 for v, w in zip(values, weights, strict=True)) / n)
    return (mean, spread) if spread > 1e-9 else None


def pool_scores(reference: Sequence[bytes], pool: Sequence[bytes]) -> list[list[int]]:
    """The pool's scores, one row per score that varies over it: conditional cost, rarity, frequency
    gain (:func:`event_scores`, of each event's kind: :func:`.tokenize.coarse`) and field surprise
    (:func:`.surprise.field_surprise`, of the event itself), each centred and in units of its spread
    over the pool, as whole numbers (× SCORE_SCALE) so sums compare exactly in any order."""
    in_pool = Counter(pool)
    kinds = {event: coarse(event) for event in in_pool}
    per_kind = event_scores([coarse(e) for e in reference], Counter(kinds[e] for e in pool))
    scores = {event: per_kind[kind] for event, kind in kinds.items()}
    surprise = field_surprise(reference, in_pool)
    per_event = {e: (*s, surprise[e]) for e, s in scores.items()}
    weights = list(in_pool.values())
    rows = []
    for i in range(4):
        units = _units([per_event[e][i] for e in in_pool], weights)
        if units is not None:
            mean, spread = units
            value = {e: round(SCORE_SCALE * (v[i] - mean) / spread) for e, v in per_event.items()}
            rows.append([value[e] for e in pool])
    return rows or [[0] * len(pool)]


def inflation(scores: Sequence[int], block: int = DEPENDENCE_BLOCK) -> float:
    """How much more a sum of consecutive scores varies than a sum of as many drawn at random (>= 1): the
    variance of the sums of consecutive blocks of ``block`` scores over ``block`` times the variance of
    one (the batch-means estimate of a design effect). Visitors come in sessions, so consecutive events
    of real traffic are alike; a relabelling of the pool ignores that, and a window of ordinary
    sessions then reaches p = 0. The caller measures it on the pool's events, in order, that came a
    window and more before the window: an attack's own events cannot deflate it, nor can its onset,
    whose first events precede the windows that confirm it. On independent events it scatters around
    1 (never below: it only ever deflates), which costs the plain test a little power; taken at a
    lower bound instead (over one plus its standard error), session-shaped traffic kept most of its
    false incidents (README, "Real-site benchmark")."""
    blocks = len(scores) // block
    if blocks < 4:
        return 1.0
    kept = scores[len(scores) - blocks * block :]
    mean = sum(kept) / len(kept)
    variance = sum((v - mean) ** 2 for v in kept) / len(kept)
    if variance <= 0:
        return 1.0
    sums = [sum(kept[i * block : (i + 1) * block]) - block * mean for i in range(blocks)]
    return max(1.0, sum(x * x for x in sums) / blocks / (block * variance))


class _MaxStatistic:
    """The permutation test's statistic: the largest of the window's score sums, each centred (a
    max-T statistic, Westfall and Young, 1993). A window differs from its baseline in one respect or
    several: a sum of the four scores lets the ones that did not change drown the one that did (a
    latency spike changes one field and no event's compressed cost); the largest, compared with the
    largest in each relabelling, keeps the test exact for all four at once. The window's own sums are
    deflated by the dependence of consecutive events (:func:`inflation`), the relabellings' are not:
    consecutive events are what a relabelling takes apart."""

    def __init__(self, rows: list[list[int]], window: int) -> None:
        self.rows = rows
        self.size = len(rows[0])
        self.window = window
        self.offsets = [window * sum(row) for row in rows]
        earlier = max(0, self.size - 2 * window)  # the pool's events a window and more before this window
        self.deflate = [1.0 / math.sqrt(inflation(row[:earlier])) for row in rows]

    def __call__(self, indices: Sequence[int]) -> int:
        # n·sum − w·total: the sum's excess over its mean, times n, in whole numbers
        n = self.size
        if len(indices) == 1:  # itemgetter of one index gives the item, not a tuple
            return max(n * row[indices[0]] - o for row, o in zip(self.rows, self.offsets, strict=True))
        pick = itemgetter(*indices)
        sums: list[int] = [sum(pick(row)) for row in self.rows]
        return max(n * total - o for total, o in zip(sums, self.offsets, strict=True))

    def observed(self) -> float:
        """The window's statistic, each row's excess deflated by the dependence of its events (:func:`inflation`)."""
        n, last = self.size, range(self.size - self.window, self.size)
        rows = zip(self.rows, self.offsets, self.deflate, strict=True)
        return max((n * sum(row[i] for i in last) - o) * d for row, o, d in rows)

    def spread(self) -> float:
        """The spread of each row's statistic over relabellings (rows are in units of their spread, so
        all rows share it): n · sqrt(w (n − w) / (n − 1)) × SCORE_SCALE."""
        n, w = self.size, self.window
        return n * SCORE_SCALE * math.sqrt(w * (n - w) / max(1, n - 1))

    def relabelled(self, rng: random.Random) -> int:
        return self(rng.sample(range(self.size), self.window))


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
    statistic: float | None = None  # the test's statistic in units of its spread; None when the test was skipped

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
        rule = strong or (composite_pass and (votes >= 2 or ncd_pass)) or (novelty_pass and (votes >= 2 or strong))
        return rule and p_pass

    total = settings.permutation_count
    # the test also settles which side of these p-values it is on (the incident rule confirms at one)
    also = [level for level in (settings.confirm_p_value,) if level is not None]
    count = done = 0
    z: float | None = None
    if decide(0.0):  # otherwise no p-value could make this an anomaly: skip the test
        # The permutation test's reference is the older half of the baseline; the newer half and the
        # window (the pool) are scored against it once, and are exchangeable under "nothing changed".
        reference, pool = baseline[: len(baseline) // 2], [*baseline[len(baseline) // 2 :], *window]
        test = _MaxStatistic(pool_scores(reference, pool), w_size)
        observed_statistic = test.observed()
        z = observed_statistic / test.spread()
        statistic = observed_statistic / max(1.0, settings.dependence)
        rng = random.Random(settings.seed)
        floor = min(total, MIN_REPORTED_PERMUTATIONS)
        while done < total:
            count += test.relabelled(rng) >= statistic  # a random relabelling of the pool
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
        statistic=z,
    )
