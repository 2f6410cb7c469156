"""MultiTrain: multi-dataset training of video transformers for action recognition."""

__version__ = "0.1.0"
