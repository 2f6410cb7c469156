"""Dataset preparation: annotation files from the official releases, resized videos, the
synthetic corpus, the H.264 writer and the dataset checker. Nothing in training imports it."""
