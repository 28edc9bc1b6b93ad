"""Progress of long work: a tqdm bar on a terminal, a plain line every half minute (and one at
the end) when stderr is a log file or a pipe, where a bar's carriage returns would pile up."""

import sys
import time

from tqdm import tqdm

EVERY = 30.0  # seconds between plain progress lines


class Progress:
    """Iterate over `items` showing progress as `desc` (`disable` shows nothing)."""

    def __init__(self, items, desc: str, unit: str = "it", total: int | None = None,
                 disable: bool = False, stream=None):
        self.items, self.desc, self.unit = items, desc, unit
        self.total = total if total is not None else (len(items) if hasattr(items, "__len__")
                                                      else None)
        self.stream = stream or sys.stderr
        self.postfix = ""
        self.bar = None
        self.disable = disable
        if not disable and self.stream.isatty():
            self.bar = tqdm(items, desc=desc, unit=unit, total=self.total, leave=False,
                            file=self.stream)

    def set_postfix(self, **values) -> None:
        """Values shown beside the count (the bar's postfix, or the end of a plain line)."""
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def __iter__(self):
        if self.bar is not None or self.disable:
            yield from (self.bar if self.bar is not None else self.items)
            return
        start = last = time.monotonic()
        n = 0
        for item in self.items:
            yield item
            n += 1
            now = time.monotonic()
            if now - last >= EVERY:
                last = now
                self._line(n, now - start)
        self._line(n, time.monotonic() - start, done=True)

    def _line(self, n: int, seconds: float, done: bool = False) -> None:
        of = f"/{self.total}" if self.total is not None and not done else ""
        rate = f", {n / seconds:.1f} {self.unit}/s" if seconds > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        state = "done in" if done else "after"
        units = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
        print(f"{self.desc}: {n}{of} {units} {state} {seconds:.0f} s{rate}{extra}",
              file=self.stream, flush=True)


def progress(items, desc: str, unit: str = "it", total: int | None = None,
             disable: bool = False) -> Progress:
    """`Progress(items, desc, ...)`: wrap any loop worth watching."""
    return Progress(items, desc, unit, total, disable)
