"""Where a training run's charts are drawn: in this process, or in a second Python process started with the run.

On a 2-core CPU, importing matplotlib takes about 0.4 s and drawing a run's five charts about 0.9 s: a quarter of a
warm run (features and model body cached), all of it after the head is trained. A second process imports
matplotlib while this one trains the head, and draws the charts from metrics.json while this one saves the model,
so where a core is free that time leaves the run's critical path. A process that has imported matplotlib already
(a notebook, a test session) would move only the drawing, and draws its charts itself.

The second process is `python -m headtune.drawing PACKAGE_DIR`. It imports the charts, then reads one line on
stdin, the staging folder and the title, and draws that folder's metrics.json into its images/. An empty stdin
(the run failed before its charts) ends it with nothing drawn. If it cannot start, finds another headtune than
PACKAGE_DIR (this process's), or fails, the charts are drawn here, as they would have been without it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Protocol

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
OTHER_PACKAGE = 3  # the helper's exit status when `python -m headtune.drawing` found another headtune


class Charts(Protocol):
    """A run's charts, drawn into a staging folder that already holds the run's metrics.json."""

    def start(self, folder: Path) -> None:
        """Begin drawing into folder/images (may return before the charts are written)."""

    def finish(self) -> None:
        """Return once every chart is written; raise if one could not be."""

    def stop(self) -> None:
        """Give up: once this returns, nothing writes into the folder any more."""


class DrawHere:
    """The charts drawn in this process, when `finish` is called: `charts` (report.charts_for's pairs), by default
    the charts of a training run with these metrics."""

    def __init__(self, metrics: dict, title: str, charts: list | None = None):
        self.metrics, self.title, self.charts, self.folder = metrics, title, charts, None

    def start(self, folder: Path) -> None:
        self.folder = folder

    def finish(self) -> None:
        from . import report  # matplotlib: imported only by a process that draws

        charts = report.charts_for(self.metrics) if self.charts is None else self.charts
        report.draw_charts(self.folder, self.metrics, charts, self.title)

    def stop(self) -> None:
        pass


class Helper:
    """The second process, started by `launch` (see the module's docstring), drawing one run's charts."""

    def __init__(self, process: subprocess.Popen, errors: IO[bytes]):
        self.process, self.errors = process, errors
        self.title, self.folder = "", None

    @classmethod
    def launch(cls) -> Helper | None:
        if not sys.executable:  # an embedded interpreter: no Python to start
            return None
        errors = tempfile.TemporaryFile()  # not a pipe: a helper that writes much must not block on a full one
        try:
            process = subprocess.Popen([sys.executable, "-m", __name__, str(PACKAGE_DIR)], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=errors)
        except OSError as err:
            errors.close()
            log.debug("charts are drawn in this process: %s could not start a second one (%s)", sys.executable, err)
            return None
        return cls(process, errors)

    def charts(self, metrics: dict, title: str) -> Charts:
        """This helper as the Charts of a run titled `title` (it reads the metrics from metrics.json)."""
        self.title = title
        return self

    def start(self, folder: Path) -> None:
        self.folder = folder
        with contextlib.suppress(OSError):  # it has ended already: finish() finds out how
            self.process.stdin.write((json.dumps({"folder": str(folder), "title": self.title}) + "\n").encode())
            self.process.stdin.close()

    def finish(self) -> None:
        code = self.process.wait()
        if code == 0:
            return
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        reason = "another headtune than this one" if code == OTHER_PACKAGE else (lines[-1] if lines else f"exit {code}")
        log.debug("the charts' second process did not draw them (%s): drawing them here", reason)
        metrics = json.loads((self.folder / "metrics.json").read_text(encoding="utf-8"))
        drawn = DrawHere(metrics, self.title)
        drawn.start(self.folder)
        drawn.finish()

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:  # still importing, waiting for a job that will not come, or drawing
            self.process.kill()
            self.process.wait()
        if not self.process.stdin.closed:
            self.process.stdin.close()
        self.errors.close()


@contextlib.contextmanager
def training_charts(draws: bool) -> Iterator[Callable[[dict, str], Charts]]:
    """Yield `charts(metrics, title)`: the Charts write_artifacts draws a training run's charts with. A process that
    `draws` them and has not imported matplotlib starts the second process now; it ends when the block does."""
    helper = Helper.launch() if draws and "matplotlib.figure" not in sys.modules else None
    try:
        yield helper.charts if helper is not None else DrawHere
    finally:
        if helper is not None:
            helper.close()


def _serve(package_dir: str) -> int:
    if PACKAGE_DIR != Path(package_dir).resolve():  # the parent's headtune is not the one this Python imports
        return OTHER_PACKAGE
    from . import report  # now, while the parent trains the head

    line = sys.stdin.readline()
    if not line:
        return 0
    job = json.loads(line)
    folder = Path(job["folder"])
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    report.draw_charts(folder, metrics, report.charts_for(metrics), job["title"])
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1]))
