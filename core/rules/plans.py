"""A plan: what a change will create, overwrite, delete and keep, shown before it runs.

One value for both fronts: the CLI prints it for `--dry-run` and confirmation, the console
shows it in a dialog, and the executor compares it with the plan it computes again inside
the transaction that claims the objects (`same_as`), so the plan confirmed is the plan run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from core.base.units import human_size


@dataclass(frozen=True)
class PlanItem:
    """One effect of a plan on one object."""

    op: str  # create | overwrite | delete | keep | detach
    kind: str  # server | disk | snapshot | backup
    id: str
    name: str
    bytes: int = 0
    note: str = ""
    when: str = "now"  # now | after-success

    @property
    def label(self) -> str:
        """The operation in words, destructive ones in capitals (colour is never the signal)."""
        return OP_LABELS[self.op]

    def describe(self, size: Callable[[int], str] = human_size) -> str:
        """'disk web1-root (20.0 GiB) after success - note', sizes in the caller's format."""
        amount = f" ({size(self.bytes)})" if self.bytes else ""
        when = " after success" if self.when == "after-success" else ""
        note = f" - {self.note}" if self.note else ""
        return f"{self.kind} {self.name or '(new)'}{amount}{when}{note}"


OP_LABELS = {
    "create": "create",
    "overwrite": "OVERWRITE",
    "delete": "DELETE",
    "keep": "keep",
    "detach": "detach",
}


@dataclass(frozen=True)
class Plan:
    """What an action will do, shown before it runs; `refusal` set means it must not run."""

    action: str
    target: str
    items: tuple[PlanItem, ...] = ()
    refusal: str | None = None
    warnings: tuple[str, ...] = ()
    confirm_text: str | None = None  # the name a user types before an overwrite
    destructive: bool = True
    route: str = ""
    estimate_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    def bytes_of(self, op: str) -> int:
        return sum(item.bytes for item in self.items if item.op == op)

    @property
    def bytes_freed(self) -> int:
        return self.bytes_of("delete")

    def of(self, op: str, kind: str | None = None) -> list[PlanItem]:
        return [i for i in self.items if i.op == op and (kind is None or i.kind == kind)]

    def identity(self) -> tuple:
        """What a confirmation agrees to: the action, the target, each object and what happens
        to it, and whether it may run. Sizes and estimates are measurements, not part of it."""
        return (
            self.action,
            self.target,
            tuple((i.op, i.kind, i.id, i.name, i.when) for i in self.items),
            self.allowed,
        )

    def same_as(self, other: Plan) -> bool:
        return self.identity() == other.identity()

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """The inverse of `to_dict` (a plan that travelled as JSON)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["items"] = tuple(PlanItem(**item) for item in data.get("items", ()))
        fields["warnings"] = tuple(data.get("warnings", ()))
        return cls(**fields)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["allowed"] = self.allowed
        data["bytes_freed"] = self.bytes_freed
        return data

    def lines(self, *, dry_run: bool = False) -> list[str]:
        """The plan as short lines a person reads in a dialog or a terminal; a dry run's say
        what it would do ("would DELETE", "would free"), since nothing is done."""
        would = "would " if dry_run else ""
        out = [f"{self.action}: {self.target}" + (" (dry run: nothing changed)" if dry_run else "")]
        if self.route:
            out.append(f"  route: {self.route}")
        for item in self.items:
            out.append(f"  {would}{item.label:<9} {item.describe()}")
        if self.bytes_freed:
            out.append(f"  {'would free' if dry_run else 'frees'} {human_size(self.bytes_freed)}")
        if self.estimate_seconds is not None:
            out.append(f"  estimated time: {max(self.estimate_seconds, 1):.0f} s")
        out.extend(f"  warning: {w}" for w in self.warnings)
        if self.refusal:
            out.append(f"  REFUSED: {self.refusal}")
        return out
