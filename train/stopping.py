"""Why a run stops before its schedule's end: a preemption signal, or too many rejected rows.

Preemption: a scheduler sends SIGTERM some time before it kills a job it will requeue (Slurm
also SIGUSR1 with `--signal`); a user presses Ctrl-C (SIGINT). While `stop_signals()` is
active each of these only raises a flag; the trainer folds the flag into the all-reduce that
ends every step, so all ranks stop after the same step, save a checkpoint, and the command exits
with EX_TEMPFAIL (75, "try again") and the command that resumes. A second Ctrl-C stops at once.
Handlers are process-wide: they are installed around the loop and the last save only, and
restored after (a signal during the last save lets the run finish: export, exit 0).

Rejections: a run whose rows are mostly rejected (media that fail to load, answers cut by
`max_length`, ...) would otherwise go on learning from the rest: `check_rejection_rate`
stops it with the counts by reason once enough samples were read.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ovmllm.data.dataset import Rejections

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure, the job may be run again
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequest:
    """The first stop signal this process received, if any."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """SIGTERM / SIGINT / SIGUSR1 set the yielded request instead of ending the process; the
    previous handlers come back on exit. Outside the main thread (where Python cannot set
    handlers) signals keep their usual effect."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame) -> None:
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not wait for the step
        request.signal = request.signal or signal.Signals(signum).name

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


class TooManyRejected(RuntimeError):
    """Too large a share of the rows read was rejected: the data or the media settings are
    wrong, and training on the rest would silently learn from a different mixture."""


def check_rejection_rate(
    rejections: Rejections, read: int, max_fraction: float, after: int
) -> None:
    """Raise `TooManyRejected` (counts by reason) when, once at least `after` samples were
    read, more than `max_fraction` of them were rejected."""
    rejected = sum(rejections.counts.values())
    if read < after or rejected <= max_fraction * read:
        return
    by_reason = ", ".join(f"{reason}: {n}" for reason, n in rejections.counts.most_common())
    raise TooManyRejected(
        f"{rejected} of the first {read} samples were rejected ({by_reason}), more than "
        f"max_rejected_fraction={max_fraction}: see rejected.jsonl for the rows; fix the data "
        "or the media settings, or raise max_rejected_fraction (1.0 = no limit)"
    )
