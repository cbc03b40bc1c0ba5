"""Progress of long commands: a bar on a terminal, plain throttled lines elsewhere."""

from io import StringIO

from config.progress import CommandProgress


class Terminal(StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_it_writes_a_line_per_stage_and_throttles_within_one():
    err = StringIO()
    with CommandProgress(err, desc="snapshot 3", unit="label", every_s=3600) as progress:
        progress.update(0, 10, stage="read")
        progress.update(5, 10, stage="read")  # within the interval: no line
        progress.update(10, 10, stage="read")  # finished: a line
        progress.update(10, 10, stage="read")  # nothing new: no line
        progress.update(0, None, stage="export")
    assert err.getvalue().splitlines() == [
        "snapshot 3 [read]: 0/10 label (0%)",
        "snapshot 3 [read]: 10/10 label (100%)",
        "snapshot 3 [export]: 0 label",
    ]


def test_off_a_terminal_a_line_is_written_once_the_interval_passed():
    err = StringIO()
    progress = CommandProgress(err, desc="run 4", unit="step", every_s=0)
    for step in (1, 2, 3):
        progress.update(step, 6, stage="running")
    assert err.getvalue().splitlines() == [
        "run 4 [running]: 1/6 step (17%)",
        "run 4 [running]: 2/6 step (33%)",
        "run 4 [running]: 3/6 step (50%)",
    ]


def test_on_a_terminal_it_draws_a_bar_and_other_output_goes_to_stdout():
    err, out = Terminal(), StringIO()
    with CommandProgress(err, desc="export 7", unit="row", out=out) as progress:
        progress.update(40, 100, stage="rows")
        progress.write("a log line")
        progress.update(100, 100, stage="rows")
    drawn = err.getvalue()
    assert "\r" in drawn
    assert "export 7 [rows]" in drawn
    assert "100/100" in drawn
    assert "|" in drawn  # the bar itself
    assert out.getvalue() == "a log line\n"


def test_a_plain_stream_is_not_a_terminal():
    assert CommandProgress(StringIO(), desc="x").tty is False
    assert CommandProgress(Terminal(), desc="x").tty is True
