"""Split annotation files: one ``relative/path<SEP>label`` per line (PySlowFast format).

With ``multi_label`` the label field may list several classes, ``"3,17"``. Blank lines
are skipped; anything else that does not parse is an error naming ``file:line``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..utils import paths

__all__ = ["Annotation", "parse_annotation_csv"]

Annotation = Tuple[str, List[int]]  # (relative video path, positive class indices)


class AnnotationLineError(ValueError):
    """A bad annotation line: `kind` is "malformed" or "bad_label"; str() names file:line."""

    def __init__(self, kind: str, where: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.kind, self.where, self.detail = kind, where, detail


def _parse_labels(field: str, multi_label: bool, where: str) -> List[int]:
    parts = field.split(",") if multi_label else [field]
    labels = []
    for p in parts:
        p = p.strip()
        try:
            labels.append(int(p))
        except ValueError:
            hint = "" if multi_label or "," not in field else \
                " (a comma-separated list needs DATA.MULTI_LABEL True)"
            raise AnnotationLineError("malformed", where,
                                      f"label {field!r} is not an integer{hint}") from None
    return labels


def parse_annotation_line(line: str, where: str, separator: str = " ",
                          num_classes: Optional[int] = None, multi_label: bool = False
                          ) -> Optional[Annotation]:
    """`(relative_path, [labels])` of one CSV line, None for a blank line.

    The label is what follows the LAST separator (paths may contain it). Raises
    AnnotationLineError naming `where` for a malformed line or an out-of-range label.
    """
    if not line.strip():
        return None
    fields = line.strip().rsplit(separator, 1)
    if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
        raise AnnotationLineError("malformed", where, f"expected 'path{separator}label', got {line!r}")
    video, label_field = fields[0].strip(), fields[1].strip()
    labels = _parse_labels(label_field, multi_label, where)
    if num_classes is not None:
        bad = [c for c in labels if not 0 <= c < num_classes]
        if bad:
            raise AnnotationLineError("bad_label", where, f"label {bad[0]} outside [0, {num_classes}) "
                                      f"(check DATA.NUM_CLASSES / MODEL.MULTI_NUM_CLASSES)")
    return video, labels


def parse_annotation_csv(path: str, separator: str = " ", num_classes: Optional[int] = None,
                         multi_label: bool = False) -> List[Annotation]:
    """Read a split file.

    Args:
        path: the CSV (``train.csv``, ``val.csv`` or ``test.csv``).
        separator: ``DATA.PATH_LABEL_SEPARATOR``; the label is what follows its LAST
            occurrence, so video paths may contain the separator.
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        multi_label: ``DATA.MULTI_LABEL``; allow ``"a,b"`` label lists.

    Returns:
        ``[(relative_path, [label, ...]), ...]`` in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed line or an out-of-range label, naming ``path:line``.
    """
    if not paths.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    if not separator:
        raise ValueError("DATA.PATH_LABEL_SEPARATOR must not be empty")
    out: List[Annotation] = []
    with paths.open_path(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            item = parse_annotation_line(raw.rstrip("\r\n"), f"{path}:{lineno}", separator,
                                         num_classes, multi_label)
            if item is not None:
                out.append(item)
    if not out:
        raise ValueError(f"{path}: no annotation lines")
    return out
