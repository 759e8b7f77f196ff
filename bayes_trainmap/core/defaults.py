"""The paper's method defaults that several layers share (sec. 2, appendix H)."""

#: Numbers of hidden states searched by default: 1-8, the paper's range.
STATES_RANGE: tuple[int, ...] = tuple(range(1, 9))

#: What ``--device`` accepts, besides ``cuda:N``.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def is_device_name(device: object) -> bool:
    """Whether ``device`` is ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    text = str(device)
    return text in DEVICE_CHOICES or (text.startswith("cuda:") and text[5:].isdigit())
