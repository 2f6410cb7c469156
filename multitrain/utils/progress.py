"""tqdm progress bars for the train/val/test loops when `USE_TQDM` is set (rank 0 only)."""
from __future__ import annotations

from typing import Iterable, Optional


def progress(iterable: Iterable, cfg, desc: str, total: Optional[int] = None, initial: int = 0):
    """`iterable` wrapped in a tqdm bar (ETA, rate; set_postfix shows running stats) on
    rank 0 when `cfg.USE_TQDM`; else `iterable` itself. The bar writes to stderr."""
    from ..engine import distributed as du

    if not cfg.USE_TQDM or not du.is_main_process():
        return iterable
    from tqdm import tqdm

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, desc=desc, total=total, initial=initial, dynamic_ncols=True,
                mininterval=1.0)


def set_postfix(bar, **stats) -> None:
    """Show `stats` (e.g. the running loss) after the bar; nothing for a plain iterable."""
    if hasattr(bar, "set_postfix"):
        bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in stats.items()},
                        refresh=False)
