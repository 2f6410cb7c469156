"""Paths and helpers shared by tests in several folders (import as `mt_testing`): the demo
config and corpus overrides, a tiny MViT, starting real `tools/run_net.py` processes and
reading back what they wrote, a free TCP port, the loader batches of a config."""
import json
import os
import socket
import subprocess
import sys
from typing import List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CONFORMANCE = os.path.join(SHARED, "conformance")
FIXTURES = os.path.join(REPO, "tests", "fixtures")
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "synthetic_multi.yaml")
RUN_NET = os.path.join(REPO, "tools", "run_net.py")

# A 2-block, 16-wide MViT (the block indices of DIM_MUL etc. fit the depth): KEY VALUE
# overrides of any MViTv2 config; a training step on 8 x 32 x 32 clips takes well under a second.
TINY_MVIT = ["MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.DIM_MUL", "[[1, 2.0]]",
             "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]",
             "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 4, 4]"]


def corpus_overrides(root: str, output_dir: str):
    """KEY VALUE overrides pointing the demo config at a corpus and an output folder."""
    rel = json.load(open(os.path.join(root, "relations.json")))
    dirs = [rel["datasets"][n]["dir"] for n in rel["datasets"]]
    return ["MODEL.MULTI_PATH_TO_DATA_DIR", [os.path.join(root, d, "pyslowfast_annotations") for d in dirs],
            "MODEL.MULTI_PATH_PREFIX", [os.path.join(root, d, "videos_320p") for d in dirs],
            "OUTPUT_DIR", output_dir]


def corpus_args(root: str, output_dir: str) -> List[str]:
    """`corpus_overrides` as command-line strings (lists written as Python literals)."""
    return [repr(o) if isinstance(o, list) else str(o) for o in corpus_overrides(root, output_dir)]


# One optimizer step of 2 micro-batches of 4 videos x 2 samples; no mixup (it pairs samples
# within the local batch, so it is not comparable across world sizes) and no drop-path.
STEP_OPTS = [
    "TRAIN.BATCH_SIZE", "4", "TRAIN.GRAD_ACCU_NUM_BATCH", "2", "TRAIN.MAX_ITERS_PER_EPOCH", "2",
    "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "100", "TEST.ENABLE", "False",
    "TRAIN.GATHER_BEFORE_LOSS", "True", "MIXUP.ENABLE", "False", "MVIT.DROPPATH_RATE", "0.0",
    "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False",
    "TRAIN.AUTO_RESUME", "False", "NUM_GPUS", "0", "SOLVER.BASE_LR", "0.1",
    # SGD: the update is the gradient itself. (AdamW divides by |g|, which turns float noise
    # on parameters whose true gradient is 0, e.g. biases before a centring, into lr-sized steps.)
    "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.NESTEROV", "False",
    "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.CLIP_GRAD_L2NORM", "None",
]


def step_args(corpus: str, output_dir: str, extra: Sequence = ()) -> List[str]:
    """run_net.py overrides of a `STEP_OPTS` run of the demo config on `corpus`."""
    return corpus_args(corpus, output_dir) + STEP_OPTS + [str(x) for x in extra]


def load_tool(name: str):
    """The script tools/<name>.py as a module (tools/ holds scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on the loopback nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra) -> dict:
    """The environment of a child process: this checkout's package first on PYTHONPATH
    (whatever is installed), one OpenMP thread, then `extra`."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **extra)


def start_python(args: Sequence[str], env_extra: Optional[dict] = None) -> subprocess.Popen:
    """`python args...` in the repository, one OpenMP thread, output piped (text)."""
    env = child_env(PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_all(procs, timeout: float = 300) -> List[str]:
    """Each process's output; every one must exit 0."""
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
        assert p.returncode == 0, out[-4000:]
    return outs


def run_python(args: Sequence[str], timeout: float = 600,
               env_extra: Optional[dict] = None) -> subprocess.CompletedProcess:
    """`python args...` in the repository to completion, stdout and stderr captured apart."""
    env = child_env(**(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def final_state(out_dir: str) -> dict:
    """The model state of the newest checkpoint a run wrote in `out_dir`."""
    import torch

    ckpts = sorted(os.listdir(os.path.join(out_dir, "checkpoints")))
    path = os.path.join(out_dir, "checkpoints", ckpts[-1])
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    """Two model states have the same keys and no element differs by more than `atol`."""
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= atol, f"largest weight difference {worst:.3g} > {atol}"


def train_losses(out_dir: str) -> List[float]:
    """The training losses a run logged in `out_dir`, in order."""
    from multitrain.engine.writers import parse_json_stats

    with open(os.path.join(out_dir, "stdout.log")) as f:
        return [s["loss"] for s in parse_json_stats(f) if s.get("_type") == "train"]


# The original code's train recipe (RandAugment, erasing, 2 samples), at demo size, no workers.
RECIPE = ["AUG.ENABLE", "True", "AUG.AA_TYPE", "rand-m7-n4-mstd0.5-inc1", "AUG.RE_PROB", "0.5",
          "AUG.NUM_SAMPLE", "2", "MIXUP.ENABLE", "False", "TRAIN.BATCH_SIZE", "6",
          "TEST.BATCH_SIZE", "6", "DATA_LOADER.NUM_WORKERS", "0"]


def recipe_cfg(corpus: str, output_dir, on_device: bool, extra: Sequence = ()):
    """The demo config on `corpus` with `RECIPE`, the recipe in the workers or on the
    device; its test split is the corpus's kinetics set (the demo's first)."""
    from multitrain.config import load_config

    over = corpus_overrides(corpus, str(output_dir))
    test_data = ["DATA.PATH_TO_DATA_DIR", over[1][0], "DATA.PATH_PREFIX", over[3][0],
                 "DATA.NUM_CLASSES", "6"]
    return load_config(DEMO_CONFIG, over + test_data + RECIPE
                       + ["AUG.ON_DEVICE", str(on_device)] + list(extra))


def first_batches(cfg, split: str, n: int = 2) -> list:
    """The first `n` batches of `split`'s loader in epoch 1."""
    from multitrain.data.loader import build_loader

    loader = build_loader(cfg, split)
    loader.sampler.set_epoch(1)
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def write_pattern_video(path, frames: int, height: int, width: int, fps: int = 30) -> None:
    """A real H.264 file with gradients, a checkerboard and a moving box (texture, edges
    and motion, so every clip op has work to do)."""
    import numpy as np

    from multitrain.preparation.h264 import write_h264

    yy, xx = np.mgrid[0:height, 0:width]

    def pattern(i):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (xx * 255 // width + 7 * i) % 256
        img[..., 1] = yy * 220 // height + 10
        img[..., 2] = ((xx // 16 + yy // 16 + i) % 2) * 190 + 30
        img[height // 4:height // 2, 20 + 4 * i:60 + 4 * i] = (230, 40, 90)
        return img

    write_h264(path, (pattern(i) for i in range(frames)), fps)


def pyav_frames(path):
    """Every frame of ``path`` as uint8 ``[T, H, W, 3]`` in presentation order, decoded
    with PyAV directly (independent of the project's readers)."""
    import av
    import numpy as np
    import torch

    with av.open(str(path)) as c:
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    return torch.from_numpy(np.stack([a for _, a in sorted(frames, key=lambda pa: pa[0])]))


def assert_close_to(frames, reference):
    """Equal up to colour-conversion rounding (decord and PyAV convert YUV separately)."""
    import torch

    assert frames.dtype == torch.uint8 and frames.shape == reference.shape
    diff = (frames.int() - reference.int()).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.1


