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
        "decord2",  # maintained decord wheels; imports as `decord`
        "av",  # PyAV: fallback decoder and the synthetic corpus's encoder
        "fvcore",
        "iopath",
        "yacs",
        "pyyaml",
        "numpy",
        "tensorboard",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout", "ruff==0.17.6"]},
)
