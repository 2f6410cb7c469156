"""run_net's multi-view test decoding each video once gives the per-view path's scores."""
import os
import subprocess
import sys

import numpy as np
import torch

from mt_testing import DEMO_CONFIG, REPO, RUN_NET



def _test_scores(corpus, out, decode_once: bool):
    ds = os.path.join(corpus, "moments_in_time")
    # MiT's protocol (2 temporal x 3 spatial views), a batch of 4 views (videos straddle
    # batches), two loader workers, random weights from RNG_SEED.
    args = [RUN_NET, "--cfg", DEMO_CONFIG, "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
            "TEST.DATASET", "mit", "TRAIN.DATASET", "mit", "DATA.NUM_CLASSES", "4",
            "MODEL.NUM_CLASSES", "4", "MODEL.USE_MULTI_HEAD", "False",
            "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "TEST.BATCH_SIZE", "4",
            "DATA.PATH_TO_DATA_DIR", os.path.join(ds, "pyslowfast_annotations"),
            "DATA.PATH_PREFIX", os.path.join(ds, "videos_320p"), "DATA_LOADER.NUM_WORKERS", "2",
            "TEST.ENABLE_SAVE", "True", "TEST.DECODE_ONCE", str(decode_once),
            "LOG_MODEL_INFO", "False", "OUTPUT_DIR", str(out)]
    r = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    details = torch.load(os.path.join(out, "test_scores_mit.details.pt"), weights_only=True)
    return dict(details, scores=torch.from_numpy(np.load(os.path.join(out, "test_scores_mit.npy"))))


def test_decode_once_gives_the_per_view_scores(small_corpus, tmp_path):
    new = _test_scores(small_corpus, tmp_path / "once", True)
    old = _test_scores(small_corpus, tmp_path / "per_view", False)
    assert new["scores"].shape == (8, 4) and bool(new["seen"].all())
    assert torch.equal(new["scores"], old["scores"])  # same batches, same code: bit-equal
    assert torch.equal(new["labels"], old["labels"]) and new["paths"] == old["paths"]
    # The scores depend on the video (a mix-up of views or videos would show).
    assert len({tuple(s.tolist()) for s in new["scores"]}) == 8
