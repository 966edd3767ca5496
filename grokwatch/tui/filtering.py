"""The runs filter: ``/`` then words, all of which a run must match.

phase:mem            phase starts with "mem" (memorized); phase:grokked,anti
wd:0.3               weight decay 0.3 (several: wd:0.3,1)
seed:7               seed 7
state:running        status.json state
has:alarm            at least one alarm firing
wd3                  any other word: a substring of the run id, phase or state
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import RunRow


@dataclass(frozen=True)
class RunFilter:
    text: str = ""
    phases: tuple[str, ...] = ()
    wds: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    has_alarm: bool = False
    words: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def active(self) -> bool:
        return bool(self.phases or self.wds or self.seeds or self.states or self.has_alarm or self.words)

    def matches(self, r: RunRow) -> bool:
        if self.phases and not any(r.phase.startswith(p) for p in self.phases):
            return False
        if self.wds and (
            r.weight_decay is None or not any(abs(r.weight_decay - w) <= 1e-9 * max(1, abs(w)) for w in self.wds)
        ):
            return False
        if self.seeds and r.seed not in self.seeds:
            return False
        if self.states and not any((r.state or "").startswith(s) for s in self.states):
            return False
        if self.has_alarm and not r.alarms:
            return False
        hay = f"{r.run_id} {r.phase} {r.state or ''}".lower()
        return all(w in hay for w in self.words)


def parse_filter(text: str) -> RunFilter:
    phases: list[str] = []
    wds: list[float] = []
    seeds: list[int] = []
    states: list[str] = []
    words: list[str] = []
    errors: list[str] = []
    has_alarm = False
    for tok in text.lower().split():
        key, sep, value = tok.partition(":")
        vals = [v for v in value.split(",") if v] if sep else []
        if sep and key == "phase":
            phases += vals
        elif sep and key in ("wd", "weight_decay"):
            for v in vals:
                try:
                    wds.append(float(v))
                except ValueError:
                    errors.append(f"wd:{v} is not a number")
        elif sep and key == "seed":
            for v in vals:
                try:
                    seeds.append(int(v))
                except ValueError:
                    errors.append(f"seed:{v} is not an integer")
        elif sep and key == "state":
            states += vals
        elif sep and key == "has" and value in ("alarm", "alarms"):
            has_alarm = True
        else:
            words.append(tok)
    return RunFilter(
        text, tuple(phases), tuple(wds), tuple(seeds), tuple(states), has_alarm, tuple(words), tuple(errors)
    )
