"""Scraping a worker's /healthz, /readyz and /metrics in the endpoint tests."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable

from people import EMAIL, HANDLE, PHONE, RAW_SPELLINGS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; (0, why) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, type(error).__name__


def wait_for_status(port: int, path: str, status: int, timeout: float,
                    report: Callable[[], str]) -> str:  # fmt: skip
    """Poll until `path` answers `status`; returns the body, or fails with the last answer."""
    deadline = time.monotonic() + timeout
    last = get(port, path)
    while last[0] != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still {last} after {timeout:.0f}s, not {status}\n"
                                 f"{report()}")  # fmt: skip
        time.sleep(0.3)
        last = get(port, path)
    return last[1]


def wait_for_metrics(port: int, names: Iterable[str], timeout: float,
                     report: Callable[[], str]) -> str:  # fmt: skip
    """Poll /metrics until every name is in it; returns the text."""
    wanted = list(names)
    deadline = time.monotonic() + timeout
    while True:
        status, text = get(port, "/metrics")
        missing = [n for n in wanted if n not in text]
        if status == 200 and not missing:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics ({status}) lacks {missing} after {timeout:.0f}s\n"
                                 f"{text[-3000:]}\n{report()}")  # fmt: skip
        time.sleep(0.5)


def personal_data_in(text: str, extra: Iterable[str] = ()) -> list[str]:
    """The people fixtures' identifiers (any spelling) found in `text`: must be none."""
    spellings = [PHONE, EMAIL, HANDLE, *(s.decode() for s in RAW_SPELLINGS), *extra]
    lowered = text.lower()
    return [s for s in spellings if s.lower() in lowered]
