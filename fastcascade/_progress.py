"""Progress bars for long runs and sweeps (tqdm, shown only on a terminal)."""
from __future__ import annotations

import sys


def progress_bar(total, progress, desc):
    """A tqdm bar, or None. ``progress``: None (on when stderr is a terminal), True, False."""
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return None
    from tqdm.auto import tqdm

    # delay: nothing is shown for work shorter than a few seconds
    return tqdm(total=total, desc=desc, unit="run", delay=2.0, file=sys.stderr, leave=False)
