"""The sweep grid: weight decay (rows) x seed (columns), each cell a run coloured by phase.

30 seeds fit 80 columns (two characters per cell). Each cell also shows the
phase's letter, so the grid reads without colour.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from ..messages import OpenRun
from ..model import PHASE_LETTER, PHASE_ORDER, RunRow, SweepModel
from ..style import phase_style
from .filter_line import RoutesFilterKeys

LABEL = 8  # width of the weight-decay labels
CURSOR = Style(reverse=True, bold=True, underline=True)


def _wd(w: float | None) -> str:
    return "?" if w is None else f"{w:g}"


class SweepGrid(RoutesFilterKeys, Widget, can_focus=True):
    BINDINGS = [
        Binding("up,k", "move(0,-1)", "Up", show=False, id="grid.up"),
        Binding("down,j", "move(0,1)", "Down", show=False, id="grid.down"),
        Binding("left,h", "move(-1,0)", "Left", show=False, id="grid.left"),
        Binding("right,l", "move(1,0)", "Right", show=False, id="grid.right"),
        Binding("enter", "open", "Detail", id="grid.open"),
    ]

    cursor: reactive[tuple[int, int]] = reactive((0, 0))

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.model: SweepModel | None = None
        self.wds: list[float | None] = []
        self.seeds: list[int | None] = []
        self.cells: dict[tuple[int, int], RunRow] = {}
        self.dirty = True

    def update_model(self, model: SweepModel, visible: bool = True) -> None:
        """Take a new model; laid out again only while the grid is on screen."""
        self.model = model
        self.dirty = True
        if visible:
            self._layout()
            self.refresh()

    def on_show(self) -> None:
        self.ensure_layout()

    def ensure_layout(self) -> None:
        """Lay out a model that arrived while the grid was hidden."""
        if self.dirty:
            self._layout()
            self.refresh()

    def _layout(self) -> None:
        self.dirty = False
        m = self.model
        if m is None:
            return
        selected = self.selected_run_id
        self.wds, self.seeds = m.weight_decays(), m.seeds()
        wi = {w: i for i, w in enumerate(self.wds)}
        si = {s: i for i, s in enumerate(self.seeds)}
        self.cells = {}
        for r in m.rows:
            self.cells.setdefault((si[r.seed], wi[r.weight_decay]), r)
        if selected is not None:
            self.select_run(selected)

    @property
    def selected(self) -> RunRow | None:
        return self.cells.get(self.cursor)

    @property
    def selected_run_id(self) -> str | None:
        r = self.selected
        return r.run_id if r else None

    def select_run(self, run_id: str) -> bool:
        self.ensure_layout()
        for pos, r in self.cells.items():
            if r.run_id == run_id:
                self.cursor = pos
                return True
        return False

    def action_move(self, dx: int, dy: int) -> None:
        if not self.seeds or not self.wds:
            return
        x, y = self.cursor
        self.cursor = (min(max(x + dx, 0), len(self.seeds) - 1), min(max(y + dy, 0), len(self.wds) - 1))

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(OpenRun((self.selected.run_id,)))

    def render(self) -> Text:
        if self.model is None:
            return Text("reading the sweep ...")
        if not self.cells:
            return Text("no runs in this sweep yet")
        w = 2  # one letter and a gap: 30 seeds in 60 columns
        out = Text(no_wrap=True, overflow="crop")
        out.append("wd \\ seed".ljust(LABEL + 2), style="bold")
        # seed labels where they fit without overlapping
        head = [" "] * (len(self.seeds) * w + 4)
        free = 0
        for x, sd in enumerate(self.seeds):
            lab = "?" if sd is None else str(sd)
            if x * w >= free:
                head[x * w : x * w + len(lab)] = list(lab)
                free = x * w + len(lab) + 1
        out.append("".join(head).rstrip(), style="dim")
        out.append("\n")
        cx, cy = self.cursor
        for y, wd in enumerate(self.wds):
            out.append(_wd(wd).rjust(LABEL) + "  ", style="bold")
            for x in range(len(self.seeds)):
                r = self.cells.get((x, y))
                if r is None:
                    out.append(" " * w)
                    continue
                style = phase_style(r.phase)
                if (x, y) == (cx, cy):
                    style = style + CURSOR
                letter = PHASE_LETTER.get(r.phase, "?")
                out.append(letter[0], style=style)
                out.append("!" if r.alarms else " ", style="bold #d62728")
            out.append("\n")
        out.append("\n")
        r = self.selected
        if r is not None:
            val = "-" if r.val_acc is None else f"{r.val_acc:.3f}"
            tot = f"/{r.total_steps}" if r.total_steps else ""
            out.append(f"{r.run_id}", style="bold")
            out.append(f"  {r.phase}  {r.state or '-'}  step {r.step}{tot}  val {val}")
            if r.alarms:
                out.append("  alarms: " + ", ".join(r.alarms), style="bold #d62728")
            out.append("\n")
        out.append("\n")
        present = [p for p in PHASE_ORDER if any(c.phase == p for c in self.cells.values())]
        for p in present:
            out.append(f" {PHASE_LETTER[p]} ", style=phase_style(p))
            out.append(f" {p}  ")
        out.append("\n")
        out.append("! alarm firing    enter: open run    arrows/hjkl: move", style="dim")
        return out

    def watch_cursor(self) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
