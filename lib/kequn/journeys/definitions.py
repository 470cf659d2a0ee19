"""Journey definitions (``conf/journeys/*.yaml``), checked without Spark.

A file holds ``journeys: [...]`` and at most one file holds ``frequency_cap``.
Step days are cumulative ``wait_days`` from the entry day; a person who cannot
receive the first steps starts at the first step they can receive, on the
entry day, and the rest of the schedule moves with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..config import ConfigError, default_conf_dir, parse, read_yaml

Channel = Literal["app_push", "sms", "wechat"]
CHANNELS = ("app_push", "wechat", "sms")  # tie order when one day holds opens on several channels


@dataclass(frozen=True)
class Step:
    step: int
    channels: list[Channel]
    wait_days: int = 0  # days after the previous step (the first step: after entry)


@dataclass(frozen=True)
class OnOpened:
    """An open of any step: the person leaves with this status and joins the group of the channel opened."""
    status: Literal["responded"] = "responded"
    feeds: dict[Channel, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OnNotOpened:
    """Nothing opened ``after_days`` after the last step: the person leaves with ``status``."""
    after_days: int = 3
    status: Literal["churned", "completed"] = "completed"
    feeds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Goal:
    """The outcome both groups are measured on (control vs treatment response rate)."""
    source: Literal["event", "transaction"]
    where: str


@dataclass(frozen=True)
class Journey:
    code: str
    name_zh: str
    name_en: str
    entry_segment: str
    steps: list[Step]
    on_opened: OnOpened = field(default_factory=OnOpened)
    on_not_opened: OnNotOpened = field(default_factory=OnNotOpened)
    control_share: float = 0.10
    priority: int = 100  # lower first when the frequency cap must choose
    goal: Optional[Goal] = None
    owner: str = ""
    description: str = ""

    @property
    def offsets(self) -> list[int]:
        out, acc = [], 0
        for s in self.steps:
            acc += s.wait_days
            out.append(acc)
        return out

    @property
    def fed_segments(self) -> list[str]:
        return sorted(set(self.on_opened.feeds.values()) | set(self.on_not_opened.feeds))


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max_steps_per_day`` journey steps per person per day, over all journeys."""
    max_steps_per_day: int = 1


@dataclass(frozen=True)
class JourneyFile:
    journeys: list[Journey] = field(default_factory=list)
    frequency_cap: Optional[FrequencyCap] = None


@dataclass(frozen=True)
class JourneyConfig:
    journeys: list[Journey]          # in dependency order (a journey fed by another comes after it)
    frequency_cap: FrequencyCap


def journeys_dir(conf_dir=None) -> Path:
    return Path(conf_dir or default_conf_dir()) / "journeys"


def load_journeys(conf_dir=None, segments=None) -> JourneyConfig:
    """Load and check; ``segments`` (code -> SegmentDef) enables the cross-checks with conf/segments."""
    files = []
    d = journeys_dir(conf_dir)
    for path in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        files.append((path, parse(JourneyFile, read_yaml(path) or {}, str(path))))
    journeys = [j for _, f in files for j in f.journeys]
    caps = [(p, f.frequency_cap) for p, f in files if f.frequency_cap is not None]
    if len(caps) > 1:
        raise ConfigError(f"frequency_cap is set in several files: {[str(p) for p, _ in caps]}")
    cap = caps[0][1] if caps else FrequencyCap()
    return JourneyConfig(check(journeys, segments), cap)


def check(journeys: list[Journey], segments=None) -> list[Journey]:
    errors = []
    codes = [j.code for j in journeys]
    for j in journeys:
        w = f"journey {j.code!r}"
        if codes.count(j.code) > 1:
            errors.append(f"{w}: defined twice")
        if not j.steps:
            errors.append(f"{w}: needs at least one step")
        if len(j.steps) > 3:
            errors.append(f"{w}: at most 3 steps (gold.journey_funnel has step_1..step_3)")
        if [s.step for s in j.steps] != list(range(1, len(j.steps) + 1)):
            errors.append(f"{w}: steps must be numbered 1, 2, ... in order")
        for s in j.steps:
            if not s.channels:
                errors.append(f"{w}: step {s.step} has no channel")
            if s.wait_days < 0:
                errors.append(f"{w}: step {s.step} has negative wait_days")
        if j.steps and j.steps[0].wait_days != 0:
            errors.append(f"{w}: the first step is sent on the entry day (wait_days 0)")
        if j.on_not_opened.after_days < 1:
            errors.append(f"{w}: on_not_opened.after_days must be at least 1")
        if not 0 <= j.control_share < 1:
            errors.append(f"{w}: control_share must be in [0, 1)")
        if segments is not None:
            if j.entry_segment not in segments:
                errors.append(f"{w}: entry segment {j.entry_segment!r} is not defined in conf/segments")
            for g in j.fed_segments:
                if g not in segments:
                    errors.append(f"{w}: feeds {g!r}, which is not defined in conf/segments")
                elif j.code not in segments[g].fed_by:
                    errors.append(f"{w}: feeds {g!r}, but that segment does not list {j.code!r} in fed_by")
    if errors:
        raise ConfigError("journey definitions:\n  " + "\n  ".join(errors))
    # Order: a journey whose entry segment is fed by another journey comes after it.
    feeders = {g: [j.code for j in journeys if g in j.fed_segments] for j0 in journeys for g in j0.fed_segments}
    by_code = {j.code: j for j in journeys}
    order, state = [], {}

    def visit(code, path):
        if state.get(code) == 2:
            return
        if state.get(code) == 1:
            raise ConfigError(f"journeys feed each other in a cycle: {' -> '.join(path + [code])}")
        state[code] = 1
        for f in feeders.get(by_code[code].entry_segment, []):
            visit(f, path + [code])
        state[code] = 2
        order.append(by_code[code])

    for c in by_code:
        visit(c, [])
    return order
