"""MultiTrain: multi-dataset training of video transformers for action recognition."""
import sys

__version__ = "0.1.0"


def _nvblas_loaded() -> bool:
    """Whether libnvblas is mapped into this process (decord2 with CUDA wheels dlopens
    every ``nvidia/*/lib/*.so`` with RTLD_GLOBAL, libnvblas among them)."""
    try:
        with open("/proc/self/maps") as f:
            return "libnvblas" in f.read()
    except OSError:
        return False


# torch binds its BLAS when it loads. Loaded after decord2's global libnvblas, its matrix
# products resolve to NVBLAS and crash the process (segfault, no message); loaded before,
# decord is harmless. So torch comes first here, and any module of this package may then
# import decord, in any order.
if "torch" not in sys.modules and "decord" in sys.modules and _nvblas_loaded():
    raise ImportError("decord was imported before torch, and its libnvblas would make "
                      "torch's matrix products crash: import multitrain (or torch) "
                      "before decord")
import torch  # noqa: E402,F401  (see above)
