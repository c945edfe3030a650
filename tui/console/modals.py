"""Dialogs: the plan confirmation (Cancel is the default), a choice, a name prompt."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

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
    if plan.route:
        text.append(f"route     {printable(plan.route)}\n")
    if plan.estimate_seconds is not None:
        text.append(f"time      about {fmt.duration(plan.estimate_seconds)}\n")
    if plan.bytes_freed:
        text.append(f"frees     {fmt.size(plan.bytes_freed)}\n", style="bold")
    for warning in plan.warnings:
        text.append(f"warning   {printable(warning)}\n", style="bold")
    return text


class ConfirmationModal(ModalScreen[bool]):
    """Shows a lifecycle plan and the equivalent CLI command; returns True to go ahead.

    Cancel has the focus. When the plan overwrites a disk (`confirm_text`), the go-ahead button
    stays disabled until the disk's name is typed, and the name field takes the focus instead.
    """

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm", show=False),
    ]

    def __init__(self, plan: Plan, *, command: str, confirm_label: str) -> None:
        super().__init__(classes="dialog-screen")
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
            if plan.confirm_text and plan.allowed:
                yield Label(f"Type {plan.confirm_text} to confirm the overwrite:")
                yield Input(placeholder=plan.confirm_text, id="confirm-name")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                if plan.allowed:
                    yield Button(
                        self.confirm_label,
                        id="confirm",
                        variant="error" if plan.destructive else "success",
                        disabled=bool(plan.confirm_text),
                    )

    def on_mount(self) -> None:
        if self.plan.confirm_text and self.plan.allowed:
            self.query_one("#confirm-name", Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#confirm-name")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.plan.confirm_text

    @on(Input.Submitted, "#confirm-name")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value == self.plan.confirm_text:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _pressed(self) -> None:
        self.dismiss(True)

    def action_confirm(self) -> None:
        if self.plan.allowed and not self.plan.confirm_text:
            self.dismiss(True)


class ChoiceModal(ModalScreen[str | None]):
    """A question with a few answers; the first answer (the safe one) has the focus."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], *, body: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.choices = choices
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            if self.body:
                yield Static(self.body)
            with Vertical(classes="choices"):
                for value, label in self.choices:
                    yield Button(label, id=f"choice-{value}", classes="choice")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    @on(Button.Pressed, ".choice")
    def _chosen(self, event: Button.Pressed) -> None:
        value = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if value == "cancel" else value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NameModal(ModalScreen[str | None]):
    """Asks for a name (e.g. the new disk's); escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, *, default: str, hint: str = "") -> None:
        super().__init__(classes="dialog-screen")
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
    def _ok(self) -> None:
        value = self.query_one("#name", Input).value.strip()
        if value:
            self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
