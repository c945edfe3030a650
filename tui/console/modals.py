"""Dialogs: the plan confirmation (Cancel is the default), a choice, a name prompt, the new
policy form and the disks a policy covers."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from core.api import Plan, printable
from tui.console import fmt

OP_STYLE = {
    "delete": "bold",
    "overwrite": "bold reverse",
    "create": "",
    "keep": "dim",
    "detach": "",
}


def plan_text(plan: Plan) -> Text:
    """The plan in words first (DELETE, OVERWRITE, keep): colour only underlines them."""
    text = Text()
    for item in plan.items:
        text.append(f"{item.label:<9}", style=OP_STYLE[item.op])
        text.append(f" {printable(item.describe(fmt.size))}\n")
    if not plan.items:
        text.append("nothing   (no object changes)\n", style="dim")
    if plan.route:
        text.append(f"route     {printable(plan.route)}\n")
    if plan.estimate_seconds is not None:
        text.append(f"time      about {fmt.duration(plan.estimate_seconds)}\n")
    if plan.bytes_freed:
        text.append(f"frees     {fmt.size(plan.bytes_freed)}\n", style="bold")
    for warning in plan.warnings:
        text.append(f"warning   {printable(warning)}\n", style="bold")
    return text


class Dialog(ModalScreen[Any]):
    """The keys of every dialog, the same everywhere: `y` goes ahead (as the dialog's go-ahead
    button would), `n` and esc cancel, enter presses the focused button, and tab or the arrows
    move between the buttons (a field or a list keeps its own arrows)."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm", show=False),
        Binding("left,up", "move(-1)", "Previous", show=False),
        Binding("right,down", "move(1)", "Next", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def action_move(self, step: int) -> None:
        """The arrows go from button to button (disabled ones skipped), round the ends; from
        a field of a form, to the next or previous field."""
        buttons = [b for b in self.query(Button) if b.focusable]
        if self.focused in buttons:
            buttons[(buttons.index(self.focused) + step) % len(buttons)].focus()  # type: ignore[arg-type]
        elif step > 0:
            self.focus_next()
        else:
            self.focus_previous()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_confirm(self) -> None:
        """Subclasses go ahead here; a dialog without a go-ahead ignores `y`."""


class ConfirmationModal(Dialog):
    """Shows a lifecycle plan and the equivalent CLI command; returns True to go ahead.

    The focus matches the risk: on the go-ahead button for a harmless plan (a snapshot, a
    backup: enter starts it), on Cancel for a destructive one. When the plan destroys what has
    no other copy or overwrites a disk (`confirm_text`), the go-ahead stays disabled until the
    name is typed, the name field has the focus, and a wrong name is answered in words.
    """

    DEFAULT_CSS = """
    ConfirmationModal #confirm-error {
        color: $error;
        text-style: bold;
        height: auto;
    }
    """

    def __init__(self, plan: Plan, *, command: str, confirm_label: str) -> None:
        super().__init__()
        self.plan = plan
        self.command = command
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(f"{plan.action}: {plan.target}", style="bold"), id="dialog-title")
            with VerticalScroll(id="plan-box"):  # a long plan scrolls; the buttons stay visible
                yield Static(plan_text(plan), id="plan")
            if plan.refusal:
                yield Static(
                    Text(f"REFUSED: {printable(plan.refusal)}", style="bold"), id="refusal"
                )
            yield Static(Text(f"$ {printable(self.command)}"), id="command", classes="command")
            if self.needs_name:
                yield Label(Text(f"Type {printable(plan.confirm_text or '')} to confirm:"))
                yield Input(placeholder=plan.confirm_text, id="confirm-name")
                yield Static("", id="confirm-error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                if plan.allowed:
                    yield Button(
                        self.confirm_label,
                        id="confirm",
                        variant="error" if plan.destructive else "success",
                        disabled=bool(plan.confirm_text),
                    )

    @property
    def needs_name(self) -> bool:
        return bool(self.plan.confirm_text and self.plan.allowed)

    def on_mount(self) -> None:
        if self.needs_name:
            self.query_one("#confirm-name", Input).focus()
        elif self.plan.allowed and not self.plan.destructive:
            self.query_one("#confirm", Button).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#confirm-name")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.plan.confirm_text
        self.query_one("#confirm-error", Static).update("")

    @on(Input.Submitted, "#confirm-name")
    def _submitted(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _pressed(self) -> None:
        self.dismiss(True)

    def action_confirm(self) -> None:
        if not self.plan.allowed:
            return
        if not self.needs_name:
            self.dismiss(True)
            return
        typed = self.query_one("#confirm-name", Input).value
        if typed == self.plan.confirm_text:
            self.dismiss(True)
            return
        said = f"{typed!r} is not {self.plan.confirm_text}" if typed else "nothing typed"
        self.query_one("#confirm-error", Static).update(
            Text(printable(f"✗ {said}: type {self.plan.confirm_text} to confirm, esc cancels"))
        )
        self.query_one("#confirm-name", Input).focus()


class ChoiceModal(Dialog):
    """A question with a few answers; the first answer (the safe one) has the focus.

    `yes` is the answer `y` gives (None: `y` does nothing); `n` and esc answer None."""

    def __init__(
        self,
        title: str,
        choices: list[tuple[str, str]],
        *,
        body: str = "",
        yes: str | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            yield Static(Text(printable(self.body, newlines=True)), id="choice-body")
            with Vertical(classes="choices"):
                for value, label in self.choices:
                    yield Button(Text(printable(label)), id=f"choice-{value}", classes="choice")

    def on_mount(self) -> None:
        self.query_one("#choice-body").display = bool(self.body)
        self.query(Button).first().focus()

    @on(Button.Pressed, ".choice")
    def _chosen(self, event: Button.Pressed) -> None:
        value = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if value == "cancel" else value)

    def action_confirm(self) -> None:
        if self.yes is not None:
            self.dismiss(self.yes)


class NameModal(Dialog):
    """Asks for a name (e.g. the new disk's); escape cancels (the name field takes y and n)."""

    def __init__(self, title: str, *, default: str, hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.default = default
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            if self.hint:
                yield Static(self.hint)
            yield Input(value=self.default, id="name")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Next", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Input.Submitted, "#name")
    @on(Button.Pressed, "#ok")
    def action_confirm(self) -> None:
        value = self.query_one("#name", Input).value.strip()
        if value:
            self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# --- policies ------------------------------------------------------------------------------

SCHEDULE_FORMS = (  # (form, label, option of `policy create`, example)
    ("daily_at", "daily at", "--daily-at", "02:00"),
    ("weekly", "weekly", "--weekly", "mon,thu@02:00"),
    ("every_days", "every N days", "--every-days", "3@02:00"),
    ("every", "every", "--every", "6h"),
    ("cron", "cron", "--cron", "0 2 * * *"),
)
KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def disk_prompt(disk: dict[str, Any]) -> Text:
    """A disk in a selection list: its name and server, never read as markup."""
    server = f"  ({disk['server']})" if disk.get("server") else ""
    return Text(printable(f"{disk['name']}{server}"))


class PolicyFormModal(Dialog):
    """The form of `policy create`: name, schedule, retention and the disks it covers.

    `submit(values)` (the façade call, run off the UI thread) creates the policy; its error is
    shown under the form, which stays open. Returns the new policy's view, or None.
    """

    def __init__(
        self, disks: list[dict[str, Any]], submit: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        super().__init__()
        self.disks = disks
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog policy-form"):
            yield Label(Text("New policy", style="bold"), id="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("name", classes="form-label")
                yield Input(placeholder="e.g. nightly", id="policy-name", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("schedule", classes="form-label")
                yield Select(
                    [(label, form) for form, label, _, _ in SCHEDULE_FORMS],
                    value="daily_at",
                    allow_blank=False,
                    compact=True,
                    id="schedule-form",
                )
                yield Input(value="02:00", id="schedule-value", compact=True)
                yield Label("e.g. 02:00", id="schedule-hint", classes="form-hint")
            for row, names in enumerate((KEEPS[:4], KEEPS[4:])):
                with Horizontal(classes="form-row"):
                    yield Label("keep" if row == 0 else "", classes="form-label")
                    for name in names:
                        yield Label(name, classes="keep-label")
                        yield Input(
                            value="7" if name == "last" else "",
                            restrict=r"[0-9]*",
                            max_length=5,
                            id=f"keep-{name}",
                            classes="keep-count",
                            compact=True,
                        )
                    if row == 1:
                        yield Label("within", classes="keep-label")
                        yield Input(
                            placeholder="e.g. 30d", id="keep-within", classes="keep-within",
                            compact=True,
                        )  # fmt: skip
            yield Label("covers (space picks disks; none: apply it later with a)")
            yield SelectionList[str](
                *[(disk_prompt(d), d["id"]) for d in self.disks], id="policy-disks"
            )
            yield Static("", id="form-error")
            yield Static("", id="command", classes="command")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#policy-name", Input).focus()
        self._show_command()

    def values(self) -> dict[str, Any]:
        """What the form says, as `create_policy` takes it (the schedule still in its form)."""
        form = str(self.query_one("#schedule-form", Select).value)
        keep = {}
        for name in KEEPS:
            text = self.query_one(f"#keep-{name}", Input).value.strip()
            keep[f"keep_{name}"] = int(text) if text else None
        within = self.query_one("#keep-within", Input).value.strip() or None
        chosen = set(self.query_one("#policy-disks", SelectionList).selected)
        return {
            "name": self.query_one("#policy-name", Input).value.strip(),
            "form": form,
            "value": self.query_one("#schedule-value", Input).value.strip(),
            "keep": keep,
            "keep_within": within,
            "disks": [d for d in self.disks if d["id"] in chosen],
        }

    def command(self, values: dict[str, Any]) -> str:
        """The equivalent `blockvault policy create ...`."""
        option = next(opt for form, _, opt, _ in SCHEDULE_FORMS if form == values["form"])
        argv = ["policy", "create", values["name"] or "NAME", option, values["value"] or "?"]
        for key, count in values["keep"].items():
            if count is not None:
                argv += [f"--{key.replace('_', '-')}", str(count)]
        if values["keep_within"]:
            argv += ["--keep-within", values["keep_within"]]
        for disk in values["disks"]:
            argv += ["--disk", disk["name"]]
        return "blockvault " + " ".join(shlex.quote(a) for a in argv)

    def _show_command(self) -> None:
        self.query_one("#command", Static).update(
            Text(f"$ {printable(self.command(self.values()))}")
        )

    @on(Select.Changed, "#schedule-form")
    def _form_changed(self, event: Select.Changed) -> None:
        example = next(ex for form, _, _, ex in SCHEDULE_FORMS if form == event.value)
        field = self.query_one("#schedule-value", Input)
        field.value = example
        self.query_one("#schedule-hint", Label).update(f"e.g. {example}")
        self._show_command()

    @on(Input.Changed)
    @on(SelectionList.SelectedChanged)
    def _changed(self) -> None:
        self.query_one("#form-error", Static).update("")
        self._show_command()

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def action_confirm(self) -> None:
        values = self.values()
        error = None
        if not values["name"]:
            error = "give the policy a name"
        elif not values["value"]:
            error = "give the schedule a time or an interval, e.g. " + next(
                ex for form, _, _, ex in SCHEDULE_FORMS if form == values["form"]
            )
        if error:
            self._error(error)
        else:
            self._submit(values)

    @work(exclusive=True, group="form", exit_on_error=False)
    async def _submit(self, values: dict[str, Any]) -> None:
        try:
            created = await asyncio.to_thread(self.submit, values)
        except Exception as exc:  # a bad schedule or rule: one line under the form
            self._error(str(exc) or type(exc).__name__)
            return
        self.dismiss(created)

    def _error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(Text(printable(f"✗ {message}")))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class DisksPickerModal(Dialog):
    """The disks a policy covers, checked: returns (disks to apply it to, to unapply it from),
    or None."""

    def __init__(self, policy: dict[str, Any], disks: list[dict[str, Any]]) -> None:
        super().__init__()
        self.policy = policy
        self.disks = disks
        self.covered = {d["id"] for d in policy["disks"]}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(
                Text(printable(f"Disks policy {self.policy['name']} covers"), style="bold"),
                id="dialog-title",
            )
            yield Static("space checks or unchecks a disk; enter on Apply saves")
            yield SelectionList[str](
                *[(disk_prompt(d), d["id"], d["id"] in self.covered) for d in self.disks],
                id="policy-disks",
            )
            yield Static("", id="command", classes="command")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Apply", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#policy-disks", SelectionList).focus()
        self._show_command()

    def changes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        chosen = set(self.query_one("#policy-disks", SelectionList).selected)
        added = [d for d in self.disks if d["id"] in chosen - self.covered]
        removed = [d for d in self.disks if d["id"] in self.covered - chosen]
        return added, removed

    def _show_command(self) -> None:
        added, removed = self.changes()
        lines = [
            "$ blockvault "
            + " ".join(shlex.quote(a) for a in ["policy", verb, self.policy["name"], *names])
            for verb, names in (
                ("apply", [d["name"] for d in added]),
                ("unapply", [d["name"] for d in removed]),
            )
            if names
        ]
        self.query_one("#command", Static).update(
            Text(printable("\n".join(lines) or "no change yet", newlines=True))
        )

    @on(SelectionList.SelectedChanged)
    def _changed(self) -> None:
        self._show_command()

    @on(Button.Pressed, "#apply")
    def action_confirm(self) -> None:
        self.dismiss(self.changes())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
