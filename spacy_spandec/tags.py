"""BIO tags <-> labelled token spans.

One implementation shared by the corpus converter (BIO files -> docs), the
scorer (spans -> BIO for seqeval) and the token-classification baseline
(BIO predictions -> entities), so all of them agree on the edge cases.
"""

from typing import Iterable, List, Sequence, Tuple

LabelledSpan = Tuple[int, int, str]  # (start, end) token offsets, end exclusive


def spans_to_bio(n_tokens: int, spans: Iterable[LabelledSpan]) -> List[str]:
    """Tag `n_tokens` tokens with BIO from non-overlapping spans.

    Overlapping spans cannot be expressed in BIO; they raise instead of being
    silently merged, so callers must flatten (e.g. via `doc.ents`) first.
    """
    tags = ["O"] * n_tokens
    for start, end, label in sorted(spans):
        if not (0 <= start < end <= n_tokens):
            raise ValueError(f"Span ({start}, {end}) is outside a sequence of {n_tokens} tokens.")
        if any(tag != "O" for tag in tags[start:end]):
            raise ValueError(
                f"Span ({start}, {end}, {label!r}) overlaps another span: BIO tags "
                "can only encode flat, non-overlapping spans."
            )
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def split_tag(tag: str) -> Tuple[str, str]:
    """(prefix, label) of one BIO/IOB1 tag: ("O", "") for `O` and `-`, else
    ("B" or "I", label). Anything else raises, so that readers of user files
    can report a bad tag by its line instead of failing the whole file."""
    if tag == "O" or tag == "-":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
        return tag[0], tag[2:]
    raise ValueError(f"Tag {tag!r} is not O, B-X or I-X.")


def bio_to_spans(tags: Sequence[str]) -> List[LabelledSpan]:
    """Read spans from BIO (or IOB1) tags.

    An `I-X` that does not continue an `X` span starts a new one (the IOB1 ->
    BIO rule used for the benchmark files), so no tag is ever dropped.
    """
    spans: List[LabelledSpan] = []
    start = -1
    label = ""
    for i, tag in enumerate(list(tags) + ["O"]):
        try:
            prefix, tag_label = split_tag(tag)
        except ValueError:
            raise ValueError(f"Tag {tag!r} at position {i} is not O, B-X or I-X.") from None
        continues = prefix == "I" and start >= 0 and tag_label == label
        if not continues:
            if start >= 0:
                spans.append((start, i, label))
            start, label = (i, tag_label) if prefix != "O" else (-1, "")
    return spans
