import io

from hark_export import progress as progress_module
from hark_export.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_and_a_last_line_with_the_count(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress_module, "EVERY", 0.0)
    p = Progress(range(3), "scenes train", unit="scene", stream=log)
    assert list(p) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("scenes train: 1/3 scenes after")
    assert lines[-1].startswith("scenes train: 3 scenes done in")
    assert "\r" not in log.getvalue()
    batches = io.StringIO()
    list(Progress(range(2), "epoch 1/3", unit="batch", stream=batches))
    assert "2 batches done in" in batches.getvalue()


def test_a_terminal_gets_a_bar_and_postfix():
    term = Terminal()
    p = Progress(range(5), "epoch 1/2", unit="batch", stream=term)
    for _ in p:
        p.set_postfix(loss="1.234")
    assert "\r" in term.getvalue() and "loss=1.234" in term.getvalue()


def test_disabled_progress_says_nothing():
    log = io.StringIO()
    assert list(Progress(range(2), "x", stream=log, disable=True)) == [0, 1]
    assert log.getvalue() == ""
