"""Map a function over many files in a process pool, with an optional progress bar."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Iterator, Optional, Sequence


def pool_map(fn: Callable, tasks: Sequence, workers: int, desc: str = "", progress: bool = False,
             ordered: bool = True, initializer: Optional[Callable] = None,
             chunksize: int = 2) -> Iterator:
    """Yield `fn(task)` for every task: in this process when `workers` <= 1 or there is a
    single task, else in a forked pool (workers then skip re-importing the parent's modules;
    spawn where fork does not exist). `ordered=False` yields results as they finish."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="video")
    pool = None
    if workers > 1 and len(tasks) > 1:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        pool = mp.get_context(method).Pool(workers, initializer=initializer)
        results = (pool.imap if ordered else pool.imap_unordered)(fn, tasks, chunksize=chunksize)
    else:
        if initializer is not None:
            initializer()
        results = map(fn, tasks)
    try:
        for r in results:
            if bar is not None:
                bar.update(1)
            yield r
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
