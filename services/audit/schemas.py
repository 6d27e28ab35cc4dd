"""What the audit service answers: a verification report, a filter of the trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Verification:
    """`failcat audit verify`'s answer. `first_bad_seq` names the first entry that is not as
    it was appended (edited, missing, moved, or cut off the tail)."""

    entries: int = 0
    head_seq: int = 0
    checkpoints: int = 0
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None and not self.problems

    def fail(self, seq: int | None, problem: str) -> None:
        if seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq):
            self.first_bad_seq = seq
        self.problems.append(problem)

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "checkpoints": self.checkpoints,
            "first_bad_seq": self.first_bad_seq,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
