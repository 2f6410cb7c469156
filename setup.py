"""MultiTrain: multi-dataset training of video transformers for action recognition."""
from setuptools import find_packages, setup

setup(
    name="multitrain",
    version="0.1.0",
    description="Multi-dataset training of MViTv2 video transformers (K400, MiT, SSv2)",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["multitrain", "multitrain.*"]),
    include_package_data=True,
    package_data={"multitrain": ["data/classnames/*.json"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        # Pinned: these decide exact outputs the tests compare (decoded frames, the bundled
        # x264 of the synthetic corpus, PIL's resampling in the baseline recipe, numpy's
        # random streams behind mixup's Beta draws and the corpus).
        "decord2==3.4.0",  # maintained decord wheels; imports as `decord`
        "av==18.1.0",  # PyAV: fallback decoder and the synthetic corpus's encoder
        "Pillow==13.0.0",
        "fvcore",
        "iopath",
        "yacs",
        "pyyaml",
        "numpy==2.4.6",
        "tensorboard",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout", "ruff==0.17.6"]},
)
