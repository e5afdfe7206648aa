"""Score what a detection service answered to a recorded real-site run.

    python benchmarks/realsite/score.py --live benchmarks/data/realsite/wagtail-a1.jsonl.gz [--json]

``--live`` scores what the live server answered during the recording (its answers are in the corpus, its
detections beside it); ``replay.py`` scores a fresh server's answers with the same functions.

Definitions (also in README.md):
- An attack is a tool's phase [start, end] from the manifest. An incident is *attributed* to an attack when
  it opens (the arrival time of the batch whose answer opened it) within [start, end + ATTRIBUTION]; the
  tail covers the exporter's batching delay and the window's lag. Any other incident is *false*.
- Quiet requests are events whose own timestamp lies outside every [start, end + ATTRIBUTION]; quiet hours
  the same stretch of wall time between the first and the last event.
- An ordinary detection is one whose window (the WINDOW events ending at its position) holds no event
  timestamped inside an attack.
- An attack is *told* when at least one incident is attributed to it; *swallowed* when an incident opened
  before it was still open at its start.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ATTRIBUTION = 30.0  # seconds after a tool ends in which an incident still counts as that tool's
WINDOW = 50  # events a detection judges (the balanced profile's window)

Detection = tuple[str, int, float, bool]  # stream, position, p-value, anomalous


@dataclass
class Event:
    stream: str
    position: int  # in its stream, from 0, counting only events the server accepted
    at: float  # its own timestamp (span start), else its batch's arrival
    record: int


@dataclass
class Incident:
    id: str
    stream: str
    opened: float  # arrival time of the batch whose answer opened it
    resolved: float | None = None
    attack: str | None = None


@dataclass
class AttackScore:
    name: str
    start: float
    end: float
    incidents: int = 0
    first_alarm: float | None = None  # seconds from the tool's start
    anomalies: int = 0  # raw anomalous detections in [start, end + ATTRIBUTION]
    swallowed_by: str | None = None
    requests: int | None = None

    @property
    def told(self) -> bool:
        return self.incidents > 0


@dataclass
class Score:
    quiet_events: int = 0
    quiet_hours: float = 0.0
    false_incidents: int = 0
    false_incident_times: list[float] = field(default_factory=list)
    ordinary: int = 0
    ordinary_p0: int = 0
    ordinary_p01: int = 0
    ordinary_p05: int = 0
    attacks: list[AttackScore] = field(default_factory=list)
    anomalies: int = 0
    incidents: int = 0
    timeline: list[tuple[float, float | None, str | None]] = field(default_factory=list)  # opened, resolved, attack
    origin: float = 0.0  # the first call's arrival: the timeline's seconds count from it

    def per_10k(self) -> float:
        return 10_000 * self.false_incidents / self.quiet_events if self.quiet_events else 0.0

    def per_hour(self) -> float:
        return self.false_incidents / self.quiet_hours if self.quiet_hours else 0.0

    def share(self, count: int) -> float | None:
        return count / self.ordinary if self.ordinary else None

    def to_json(self) -> dict[str, Any]:
        return {
            "quiet_events": self.quiet_events,
            "quiet_hours": round(self.quiet_hours, 4),
            "false_incidents": self.false_incidents,
            "false_per_10k_quiet": round(self.per_10k(), 2),
            "false_per_hour": round(self.per_hour(), 2),
            "false_incident_seconds": [round(t, 1) for t in self.false_incident_times],
            "ordinary_detections": self.ordinary,
            "ordinary_share_p0": self.share(self.ordinary_p0),
            "ordinary_share_p01": self.share(self.ordinary_p01),
            "ordinary_share_p05": self.share(self.ordinary_p05),
            "incidents": self.incidents,
            "incident_timeline": [{"opened_s": o, "resolved_s": r, "attack": a} for o, r, a in self.timeline],
            "attack_seconds": [
                {"name": a.name, "start_s": round(a.start - self.origin, 1), "end_s": round(a.end - self.origin, 1)}
                for a in self.attacks
            ],
            "anomalies": self.anomalies,
            "attacks": [
                {
                    "name": a.name,
                    "told": a.told,
                    "incidents": a.incidents,
                    "first_alarm_s": None if a.first_alarm is None else round(a.first_alarm, 1),
                    "anomalies": a.anomalies,
                    "swallowed_by": a.swallowed_by,
                    "tool_requests": a.requests,
                }
                for a in self.attacks
            ],
        }


def _timestamp(event: Any, fallback: float) -> float:
    value = event.get("timestamp") if isinstance(event, dict) else None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return fallback
    return fallback


def _accepted(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("success", True) is True and "error" not in answer


def events_of(records: Sequence[dict[str, Any]], answers: Sequence[Any]) -> list[Event]:
    """Every event the server accepted, with its stream position, in the order it was sent."""
    out: list[Event] = []
    positions: dict[str, int] = {}
    for n, (record, answer) in enumerate(zip(records, answers, strict=True)):
        if not _accepted(answer):
            continue
        body = record["body"]
        stream = body.get("stream_id") or "default"
        for event in body.get("events") or []:
            position = positions.get(stream, 0)
            positions[stream] = position + 1
            out.append(Event(stream, position, _timestamp(event, record["t"]), n))
    return out


def _attack_of(at: float, attacks: Sequence[dict[str, Any]], tail: float) -> dict[str, Any] | None:
    for attack in attacks:
        if attack["start"] <= at <= attack["end"] + tail:
            return attack
    return None


def score(
    records: Sequence[dict[str, Any]],
    answers: Sequence[Any],
    phases: Sequence[dict[str, Any]],
    detections: Iterable[Detection] | None,
    *,
    window: int = WINDOW,
    attribution: float = ATTRIBUTION,
) -> Score:
    attacks = sorted((p for p in phases if p.get("kind") == "attack"), key=lambda p: p["start"])
    result = Score(
        attacks=[
            AttackScore(a["name"], a["start"], a["end"], requests=(a.get("requests") or {}).get("tool"))
            for a in attacks
        ]
    )
    by_name = {id(a): s for a, s in zip(attacks, result.attacks, strict=True)}
    events = events_of(records, answers)

    # quiet requests and hours
    for event in events:
        if _attack_of(event.at, attacks, attribution) is None:
            result.quiet_events += 1
    if events:
        first, last = min(e.at for e in events), max(e.at for e in events)
        busy = sum(max(0.0, min(a["end"] + attribution, last) - max(a["start"], first)) for a in attacks)
        result.quiet_hours = max(0.0, last - first - busy) / 3600

    # incidents and raw anomalies, from the answers in order
    incidents: dict[str, Incident] = {}
    for record, answer in zip(records, answers, strict=True):
        if not _accepted(answer):
            continue
        stream = record["body"].get("stream_id") or "default"
        for _anomaly in answer.get("anomalies") or []:
            result.anomalies += 1
            hit = _attack_of(record["t"], attacks, attribution)
            if hit is not None:
                by_name[id(hit)].anomalies += 1
        for change in answer.get("incidents") or []:
            kind, ident = change.get("change"), str(change.get("id"))
            if kind == "opened" and ident not in incidents:
                incidents[ident] = Incident(ident, stream, record["t"])
            elif kind == "resolved" and ident in incidents:
                incidents[ident].resolved = record["t"]
    result.incidents = len(incidents)
    origin = result.origin = records[0]["t"] if records else 0.0
    for incident in sorted(incidents.values(), key=lambda i: i.opened):
        hit = _attack_of(incident.opened, attacks, attribution)
        incident.attack = None if hit is None else hit["name"]
        result.timeline.append(
            (
                round(incident.opened - origin, 1),
                None if incident.resolved is None else round(incident.resolved - origin, 1),
                incident.attack,
            )
        )
        if hit is None:
            result.false_incidents += 1
            result.false_incident_times.append(incident.opened - origin)
            continue
        scored = by_name[id(hit)]
        scored.incidents += 1
        delay = incident.opened - hit["start"]
        if scored.first_alarm is None or delay < scored.first_alarm:
            scored.first_alarm = delay
    for attack, scored in zip(attacks, result.attacks, strict=True):
        for incident in incidents.values():
            if incident.opened < attack["start"] and (incident.resolved is None or incident.resolved > attack["start"]):
                scored.swallowed_by = incident.id

    # ordinary detections: windows with no attack event
    if detections is not None:
        in_attack: dict[str, list[int]] = {}  # per stream, positions of events inside an attack, sorted
        for event in events:
            if _attack_of(event.at, attacks, 0.0) is not None:
                in_attack.setdefault(event.stream, []).append(event.position)
        for stream, position, p_value, _anomalous in detections:
            marks = in_attack.get(stream, [])
            hit = bisect_right(marks, position)  # attack events at positions <= position
            if hit and marks[hit - 1] > position - window:
                continue
            result.ordinary += 1
            result.ordinary_p0 += p_value <= 0.0
            result.ordinary_p01 += p_value <= 0.01
            result.ordinary_p05 += p_value <= 0.05
    return result


# -- files --------------------------------------------------------------------------------------------


def load_corpus(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The recorded calls in order, and the run's manifest (beside the corpus)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        records = [json.loads(line) for line in f if line.strip()]
    manifest_path = manifest_of(path)
    if not manifest_path.exists():
        sys.exit(f"{path}: no manifest {manifest_path.name} beside it")
    return records, json.loads(manifest_path.read_text())


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def manifest_of(path: Path) -> Path:
    return path.with_name(stem(path) + ".manifest.json")


def live_detections(path: Path) -> list[Detection] | None:
    live = path.with_name(stem(path) + ".live.json.gz")
    if not live.exists():
        return None
    with gzip.open(live, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return [(row[0], int(row[1]), float(row[3]), bool(row[4])) for row in data["detections"]]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(rows: Sequence[tuple[str, str, Score]]) -> str:
    """One line per (recording, build), then one line per attack."""
    lines = [
        "| recording | build | quiet requests | false incidents | per 10k quiet | per hour | ordinary p=0 / <=0.01 / <=0.05"
        " | attacks told | told once |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for recording, build, s in rows:
        told = sum(a.told for a in s.attacks)
        once = sum(a.incidents == 1 for a in s.attacks)
        lines.append(
            f"| {recording} | {build} | {s.quiet_events:,} | {s.false_incidents} | {s.per_10k():.2f} | {s.per_hour():.1f}"
            f" | {_pct(s.share(s.ordinary_p0))} / {_pct(s.share(s.ordinary_p01))} / {_pct(s.share(s.ordinary_p05))}"
            f" ({s.ordinary:,}) | {told}/{len(s.attacks)} | {once}/{len(s.attacks)} |"
        )
    lines += [
        "",
        "| recording | build | attack | incidents | first alarm s | raw anomalies | swallowed by an open incident |",
        "|---|---|---|---|---|---|---|",
    ]
    for recording, build, s in rows:
        for a in s.attacks:
            first = "-" if a.first_alarm is None else f"{a.first_alarm:.1f}"
            lines.append(
                f"| {recording} | {build} | {a.name} | {a.incidents} | {first} | {a.anomalies} |"
                f" {'yes' if a.swallowed_by else ''} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="+", type=Path)
    parser.add_argument("--live", action="store_true", help="what this command scores (the live answers); optional")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for path in args.corpus:
        records, manifest = load_corpus(path)
        answers = [r.get("answer") if r.get("status") == 200 else None for r in records]
        rows.append((stem(path), "live", score(records, answers, manifest["phases"], live_detections(path))))
    if args.json:
        print(json.dumps([{"recording": r, "build": b, **s.to_json()} for r, b, s in rows], indent=1))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()
