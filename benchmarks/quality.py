"""Detection quality on traffic nobody tuned on: scenario families × seeds, tuned beside held-out.

    python benchmarks/quality.py [--seeds 10] [--families all] [--split both] [--quiet 3000]
                                 [--share S] [--length N] [--routes N] [--rate R] [--drift D]

Each family (``benchmarks/families.py``: the demo shop's spans through our mapping and the naive one,
and raw SDK events: logs, API metrics, security events, transactions) makes, per seed, a labelled
stream with one episode of every kind (scanner, SQL injection, error burst, latency spike,
credential stuffing, new endpoint), each diluted in ordinary traffic (share 1.0 .. 0.3) and lasting
10 .. 200 events, at a traffic rate, over 5 .. 300 routes, with or without a drifting mix (drawn
from the seed unless fixed by the options); and a quiet run of ordinary traffic alone.

Every stream goes through the embedded engine (``DetectionService().detect``, batches of 100, the
profile's sizes). Two outputs are scored (``driftlock.demo.scoring``):

* alarms, what the application is told (:class:`Told`: the anomaly whose ``incident.opened`` is true,
  as the detection service marks them; for an API that marks none, ``driftlock.alarms`` as the
  exporter's per-process fallback raises them): recall per kind,
  false alarms per 10,000 ordinary events, delay from an episode's start in events and seconds;
* raw detections, every anomalous detection ``detect()`` returns: recall per kind, anomalous
  detections on ordinary traffic per 10,000 ordinary events and as a share of the detections run
  on ordinary traffic.

The split is fixed in ``benchmarks/families.py``: tuned = TUNED_FAMILIES at seeds 1..N; held-out =
every family at seeds 101..100+N (N <= 10), which includes HELD_OUT_FAMILIES, never tuned on.
Goals (held-out): each kind found in >= 9/10 episodes in every family; <= 1 false alarm per 10,000
ordinary events; raw anomalous detections on ordinary traffic <= 1% of detections; median delay
under one window.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks import families as F  # noqa: E402

from driftlock.alarms import ALARM_P_VALUE, DEFAULT_CONFIRMATIONS, IncidentTracker  # noqa: E402
from driftlock.demo.scoring import RawScore, Score, detection_positions, score, score_raw  # noqa: E402
from driftlock.engine.settings import PROFILES, resolve_settings  # noqa: E402
from driftlock.service import DetectionService  # noqa: E402

BATCH = 100
STREAM = "q"


class Told:
    """What the application is told of one stream's anomalies: the positions of the alarms.

    The one place that decides it. When the detection service marks incidents (each anomaly carries
    ``"incident": {"id": ..., "opened": true|false}`` or null), the alarm is the anomaly that opened
    one; otherwise the alarm rule the exporter applies (``driftlock.alarms``: CONFIRMATIONS anomalous
    detections at p <= the alarm p-value within a window, once per incident)."""

    def __init__(self, *, window: int, confirmations: int, p_value: float) -> None:
        self.tracker = IncidentTracker(confirmations, window, p_value)

    def __call__(self, anomalies: Sequence[Mapping[str, Any]], offset: int) -> list[int]:
        told = []
        for anomaly in sorted(anomalies, key=lambda a: int(a["index"])):
            position = offset + int(anomaly["index"])
            if "incident" in anomaly:
                incident = anomaly["incident"]
                if isinstance(incident, Mapping) and incident.get("opened") is True:
                    told.append(position)
            elif self.tracker.observe(position, anomaly.get("metrics", {}).get("p_value")):
                told.append(position)
        return told


@dataclass
class Detected:
    told: list[int]  # alarm positions
    anomalous: list[int]  # positions of every anomalous detection
    strong: list[int]  # of them, those at p <= ALARM_P_VALUE
    detections: list[int]  # positions of every detection run
    seconds: float


def detect(events: list[dict[str, Any]], override: dict[str, Any], told: Told) -> Detected:
    service = DetectionService()
    alarms: list[int] = []
    anomalous: list[int] = []
    strong: list[int] = []
    started = time.perf_counter()
    for offset in range(0, len(events), BATCH):
        body = {"stream_id": STREAM, "events": events[offset : offset + BATCH], "config_override": override}
        found = service.detect(body, request_id="q")["anomalies"]
        anomalous += [offset + int(a["index"]) for a in found]
        strong += [offset + int(a["index"]) for a in found if a["metrics"]["p_value"] <= ALARM_P_VALUE]
        alarms += told(found, offset)
    took = time.perf_counter() - started
    settings = resolve_settings({k: v for k, v in override.items() if k != "confirmations"})
    run = detection_positions(len(events), baseline=settings.baseline_size, window=settings.window_size,
                              hop=settings.hop_size)  # fmt: skip
    info = service.stream_info(STREAM)
    if info is None or info["detections"] != len(run):
        raise RuntimeError(f"the engine ran {info and info['detections']} detections, the scorer expects {len(run)}")
    return Detected(alarms, anomalous, strong, run, took)


@dataclass
class Tally:
    """One (split, family, mapping): its episode runs and its quiet runs."""

    scores: list[Score] = field(default_factory=list)
    raws: list[RawScore] = field(default_factory=list)
    quiet_alarms: int = 0
    quiet_events: int = 0
    quiet_detections: int = 0
    quiet_anomalous: int = 0
    strong_ordinary: int = 0  # anomalous detections at p <= ALARM_P_VALUE on ordinary traffic, episodes and quiet
    seconds: float = 0.0
    by_share: dict[float, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    by_length: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))


LENGTH_BUCKETS = ((10, 24), (25, 49), (50, 99), (100, 200))


def _bucket(length: int) -> str:
    for low, high in LENGTH_BUCKETS:
        if low <= length <= high:
            return f"{low}-{high}"
    return f"{length}"


def run_stream(
    stream: F.LabelledStream, tally: Callable[[str], Tally], args: argparse.Namespace, *, quiet: F.LabelledStream | None
) -> str:
    window = PROFILES[args.profile].window_size
    override = {"profile": args.profile, **args.override}
    if args.confirmations is not None:
        override["confirmations"] = args.confirmations
    confirmations = args.confirmations or DEFAULT_CONFIRMATIONS
    mappings = {"ours": stream.events}
    if stream.naive is not None and "naive" in args.mappings:
        mappings["naive"] = stream.naive
    notes = []
    for name, events in mappings.items():
        t = tally(name)
        found = detect(events, override, Told(window=window, confirmations=confirmations, p_value=args.alarm_p))
        s = score(stream.episodes, found.told, window=window, normal_events=stream.normal_events, times=stream.times)
        raw = score_raw(stream.episodes, found.anomalous, found.detections, window=window,
                        normal_events=stream.normal_events, times=stream.times)  # fmt: skip
        t.scores.append(s)
        t.raws.append(raw)
        strong = score_raw(
            stream.episodes, found.strong, found.detections, window=window, normal_events=stream.normal_events
        )
        t.strong_ordinary += strong.ordinary_anomalous
        t.seconds += found.seconds
        for result, drawn in zip(s.episodes, stream.settings["episodes"], strict=True):
            t.by_share[drawn["share"]][0] += result.found
            t.by_share[drawn["share"]][1] += 1
            t.by_length[_bucket(drawn["length"])][0] += result.found
            t.by_length[_bucket(drawn["length"])][1] += 1
        notes.append(f"{name} {s.found}/{len(s.episodes)} alarms, {raw.found} raw, {s.false_alarms} false")
        if quiet is not None:
            q_events = quiet.naive if name == "naive" and quiet.naive is not None else quiet.events
            q = detect(q_events, override, Told(window=window, confirmations=confirmations, p_value=args.alarm_p))
            t.quiet_alarms += len(q.told)
            t.quiet_events += len(q_events)
            t.quiet_detections += len(q.detections)
            t.quiet_anomalous += len(q.anomalous)
            t.strong_ordinary += len(q.strong)
            t.seconds += q.seconds
            notes.append(f"quiet {len(q.told)} alarms, {len(q.anomalous)}/{len(q.detections)} raw")
    return "; ".join(notes)


# -- the report -------------------------------------------------------------------------------------------


def _ratio(found: int, total: int) -> str:
    return f"{found}/{total}" if total else "-"


def _median(values: Iterable[float], digits: int = 0) -> str:
    values = list(values)
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def _kind(scores: Sequence[Score | RawScore], kind: str) -> tuple[int, int]:
    found = sum(s.by_kind.get(kind, (0, 0))[0] for s in scores)
    return found, sum(s.by_kind.get(kind, (0, 0))[1] for s in scores)


def _kind_delays(scores: Sequence[Score | RawScore], kind: str, seconds: bool) -> list[float]:
    out: list[float] = []
    for s in scores:
        for r in s.episodes:
            if r.episode.kind == kind and r.found:
                value = r.seconds if seconds else r.delay
                if value is not None:
                    out.append(value)
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print()


def report(tallies: dict[tuple[str, str, str], Tally], args: argparse.Namespace, splits: Sequence[str]) -> None:
    window = PROFILES[args.profile].window_size
    rows_of = sorted({(f, m) for _, f, m in tallies}, key=lambda fm: (F.FAMILIES.index(fm[0]), fm[1] != "ours"))

    def get(split: str, family: str, mapping: str) -> Tally | None:
        t = tallies.get((split, family, mapping))
        return t if t is not None and (t.scores or t.quiet_events) else None

    settings = {"profile": args.profile, **args.override}
    print(f"\nquality, {settings}, alarms: the incidents the service opened (confirmations "
          f"{args.confirmations or DEFAULT_CONFIRMATIONS} at p <= {ALARM_P_VALUE}), window {window}; seeds: tuned {args.tuned_seeds[0]}-{args.tuned_seeds[-1]}, "
          f"held-out {args.held_seeds[0]}-{args.held_seeds[-1]}; quiet runs {args.quiet} events")  # fmt: skip
    print("alarms = what the application is told; raw = anomalous detections detect() returns; "
          "delay = median from episode start, of found episodes\n")  # fmt: skip

    print("Per family and kind: episodes found (alarms, raw), median alarm delay (events / seconds)\n")
    header = ["family", "mapping", "kind"]
    for split in splits:
        header += [f"alarms {split}", f"raw {split}", f"delay ev {split}", f"delay s {split}"]
    rows = []
    for family, mapping in rows_of:
        for kind in F.KINDS:
            row = [family, mapping, kind]
            for split in splits:
                t = get(split, family, mapping)
                if t is None or not t.scores:
                    row += ["-", "-", "-", "-"]
                    continue
                row += [_ratio(*_kind(t.scores, kind)), _ratio(*_kind(t.raws, kind)),
                        _median(_kind_delays(t.scores, kind, False)), _median(_kind_delays(t.scores, kind, True), 1)]  # fmt: skip
            rows.append(row)
    table(header, rows)

    print("Per family: totals, false alarms and raw detections on ordinary traffic (raw share: anomalous / detections "
          f"whose window holds no episode event; 'both at p<={ALARM_P_VALUE}': episode and quiet runs, counting only "
          f"anomalous detections at p <= {ALARM_P_VALUE})\n")  # fmt: skip
    header = ["family", "mapping", "split", "found alarms", "found raw", "FA/10k", "quiet FA/10k",
              "raw FP/10k", "raw share ordinary", "quiet raw share", f"both at p<={ALARM_P_VALUE}", "delay ev",
              "delay s", "raw delay ev", "engine s"]  # fmt: skip
    rows = []
    for family, mapping in rows_of:
        for split in splits:
            t = get(split, family, mapping)
            if t is None:
                continue
            found = sum(s.found for s in t.scores)
            injected = sum(len(s.episodes) for s in t.scores)
            raw_found = sum(r.found for r in t.raws)
            normal = sum(s.normal_events for s in t.scores)
            fa = sum(s.false_alarms for s in t.scores)
            ordinary = sum(r.ordinary_detections for r in t.raws)
            ordinary_flagged = sum(r.ordinary_anomalous for r in t.raws)
            rows.append([
                family, mapping, split, _ratio(found, injected), _ratio(raw_found, injected),
                f"{10_000 * fa / normal:.1f}" if normal else "-",
                f"{10_000 * t.quiet_alarms / t.quiet_events:.1f}" if t.quiet_events else "-",
                f"{10_000 * ordinary_flagged / normal:.1f}" if normal else "-",
                f"{100 * ordinary_flagged / ordinary:.1f}% ({ordinary_flagged}/{ordinary})" if ordinary else "-",
                f"{100 * t.quiet_anomalous / t.quiet_detections:.1f}% ({t.quiet_anomalous}/{t.quiet_detections})"
                if t.quiet_detections else "-",
                f"{100 * t.strong_ordinary / max(1, ordinary + t.quiet_detections):.1f}%",
                _median(d for s in t.scores for d in s.delays), _median((d for s in t.scores for d in s.delays_seconds), 1),
                _median(d for r in t.raws for d in r.delays), f"{t.seconds:.1f}",
            ])  # fmt: skip
    table(header, rows)

    print("Alarm recall by episode share (own events / episode events) and by episode length, all families, ours\n")
    header = ["split", *[f"share {s}" for s in F.SHARES], *[f"len {lo}-{hi}" for lo, hi in LENGTH_BUCKETS]]
    rows = []
    for split in splits:
        share: dict[float, list[int]] = defaultdict(lambda: [0, 0])
        length: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (sp, _, mapping), t in tallies.items():
            if sp != split or mapping != "ours":
                continue
            for key, (f, n) in t.by_share.items():
                share[key][0] += f
                share[key][1] += n
            for bucket, (f, n) in t.by_length.items():
                length[bucket][0] += f
                length[bucket][1] += n
        rows.append([split, *[_ratio(*share[s]) for s in F.SHARES],
                     *[_ratio(*length[f"{lo}-{hi}"]) for lo, hi in LENGTH_BUCKETS]])  # fmt: skip
    table(header, rows)

    if "held-out" in splits:
        print("Goals, held-out (ours): each kind >= 90% found | FA <= 1 per 10k ordinary events (episodes and quiet) | "
              f"raw share on ordinary <= 1% | median delay < {window} events\n")  # fmt: skip
        rows = []
        for family, mapping in rows_of:
            t = get("held-out", family, mapping)
            if t is None or mapping != "ours" or not t.scores:
                continue
            kinds = [_kind(t.scores, k) for k in F.KINDS]
            worst = min(kinds, key=lambda fn: fn[0] / fn[1] if fn[1] else 1.0)
            normal = sum(s.normal_events for s in t.scores) + t.quiet_events
            fa = (sum(s.false_alarms for s in t.scores) + t.quiet_alarms) * 10_000 / max(1, normal)
            ordinary = sum(r.ordinary_detections for r in t.raws) + t.quiet_detections
            share = (sum(r.ordinary_anomalous for r in t.raws) + t.quiet_anomalous) / max(1, ordinary)
            delays = [d for s in t.scores for d in s.delays]
            delay = statistics.median(delays) if delays else float("inf")
            rows.append([
                family, f"{'ok' if all(f >= 0.9 * n for f, n in kinds) else 'MISS'} (worst {_ratio(*worst)})",
                f"{'ok' if fa <= 1 else 'MISS'} ({fa:.1f})", f"{'ok' if share <= 0.01 else 'MISS'} ({100 * share:.1f}%)",
                f"{'ok' if delay < window else 'MISS'} ({delay:.0f})",
            ])  # fmt: skip
        table(["family", "recall", "false alarms", "raw on ordinary", "delay"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per family and split (held-out: at most 10)")
    parser.add_argument("--families", default="all", help=f"comma-separated, of: {', '.join(F.FAMILIES)}")
    parser.add_argument("--split", default="both", choices=("tuned", "held-out", "both"))
    parser.add_argument("--profile", default="balanced", choices=sorted(PROFILES))
    parser.add_argument(
        "--confirmations",
        type=int,
        help=f"the incident rule's, sent in config_override (default: the service's, {DEFAULT_CONFIRMATIONS})",
    )
    parser.add_argument(
        "--alarm-p",
        type=float,
        default=ALARM_P_VALUE,
        help="p-value a confirming detection needs, for APIs that mark no incidents",
    )
    parser.add_argument("--quiet", type=int, default=3000, help="events of ordinary traffic alone per seed; 0: none")
    parser.add_argument("--override", type=json.loads, default={}, help="detection settings, JSON")
    parser.add_argument("--mappings", default="ours,naive", help="shop-spans: comma-separated, of: ours, naive")
    parser.add_argument("--share", type=float, help="fix the own events' share inside episodes (1.0 .. 0.3)")
    parser.add_argument("--length", type=int, help="fix the episode length in events (10 .. 200)")
    parser.add_argument("--routes", type=int, help="fix the number of routes of the ordinary mix (5 .. 300)")
    parser.add_argument("--rate", type=float, help="fix the traffic rate, events per second")
    parser.add_argument("--drift", type=float, help="fix the drift of the ordinary mix (0 .. 1)")
    args = parser.parse_args()
    chosen = F.FAMILIES if args.families == "all" else tuple(args.families.split(","))
    unknown = [f for f in chosen if f not in F.FAMILIES]
    if unknown:
        parser.error(f"unknown family {unknown[0]!r}; expected some of {', '.join(F.FAMILIES)}")
    splits = ("tuned", "held-out") if args.split == "both" else (args.split,)
    args.tuned_seeds = list(range(1, 1 + args.seeds))
    args.held_seeds = list(F.HELD_OUT_SEEDS)[: args.seeds]
    knobs = F.Knobs(share=args.share, length=args.length, routes=args.routes, rate=args.rate, drift=args.drift)
    quiet_knobs = F.Knobs(routes=args.routes, rate=args.rate, drift=args.drift, quiet=True, events=args.quiet)
    tallies: dict[tuple[str, str, str], Tally] = defaultdict(Tally)
    started = time.perf_counter()
    for split in splits:
        for family in chosen:
            seeds = args.tuned_seeds if split == "tuned" else args.held_seeds
            in_split = F.is_tuned if split == "tuned" else F.is_held_out
            for seed in (s for s in seeds if in_split(family, s)):
                stream = F.generate(family, seed, knobs)
                quiet = F.generate(family, seed, quiet_knobs) if args.quiet else None
                note = run_stream(stream, lambda m, k=(split, family): tallies[(*k, m)], args, quiet=quiet)
                print(f"{split} {family} seed {seed} ({len(stream.events)} events, routes {stream.settings['routes']}, "
                      f"{stream.settings['rate']}/s, drift {stream.settings['drift']}): {note}",
                      file=sys.stderr, flush=True)  # fmt: skip
    report(tallies, args, splits)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
