"""One-line reasons for the files and frames an in-situ run cannot handle."""


def _short(err: BaseException) -> str:
    """First line of an error's message (at most 160 characters)."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]

