"""`contactflow run privacy` with a bug planted for a test: the first request the app
takes in raises a TypeError whose message quotes the person's phone number (as a careless
f-string would), after the request was decoded; later ones go through as usual.

Run as `python buggy_privacy_app.py run privacy` in place of the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from people import PHONE

from streams.cli import main
from streams.control.privacy.service import PrivacyService

_real_submit = PrivacyService.submit_message
_planted = [True]


def _submit_with_a_bug(self: PrivacyService, value: bytes, now: datetime) -> Any:
    if _planted and _planted.pop():
        raise TypeError(f"cannot normalise {PHONE}")
    return _real_submit(self, value, now)


PrivacyService.submit_message = _submit_with_a_bug  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
