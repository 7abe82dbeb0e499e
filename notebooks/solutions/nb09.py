"""Solutions for 09_token_tasks's exercises."""
D, HIDDEN, POS_TAGS = 384, 64, 38  # MiniLM's width; the probe's hidden units; the POS tags of the CoNLL sample


def first_piece_labels(word_ids, word_labels):
    """The word's label on its first piece; -100 on its other pieces and on special tokens (word id None)."""
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(-100)
        else:
            labels.append(word_labels[word])
        previous = word
    return labels


def spans(tags):
    """(type, start, end) of every entity; an I- tag that does not continue an open entity of its type opens one."""
    found, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, name = tag[:1], tag[2:]
        continues = prefix == "I" and name == kind
        if kind is not None and not continues:
            found.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = name, i
    return found


ANSWERS = {
    "first_piece_labels": first_piece_labels,
    "spans": spans,
    # first layer d × h weights + h biases; second layer h × C weights + C biases
    "mlp_probe_pos": D * HIDDEN + HIDDEN + HIDDEN * POS_TAGS + POS_TAGS,
}
