"""Paths and helpers shared by tests in several folders (import as `mt_testing`)."""
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CONFORMANCE = os.path.join(SHARED, "conformance")
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "synthetic_multi.yaml")


def corpus_overrides(root: str, output_dir: str):
    """KEY VALUE overrides pointing the demo config at a corpus and an output folder."""
    rel = json.load(open(os.path.join(root, "relations.json")))
    dirs = [rel["datasets"][n]["dir"] for n in rel["datasets"]]
    return ["MODEL.MULTI_PATH_TO_DATA_DIR", [os.path.join(root, d, "pyslowfast_annotations") for d in dirs],
            "MODEL.MULTI_PATH_PREFIX", [os.path.join(root, d, "videos_320p") for d in dirs],
            "OUTPUT_DIR", output_dir]


def write_pattern_video(path, frames: int, height: int, width: int, fps: int = 30) -> None:
    """A real H.264 file with gradients, a checkerboard and a moving box (texture, edges
    and motion, so every clip op has work to do)."""
    import av
    import numpy as np

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (xx * 255 // width + 7 * i) % 256
        img[..., 1] = yy * 220 // height + 10
        img[..., 2] = ((xx // 16 + yy // 16 + i) % 2) * 190 + 30
        img[height // 4:height // 2, 20 + 4 * i:60 + 4 * i] = (230, 40, 90)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
