"""Decoders whose work grew faster than their input (issue 13) stay linear.

The quadratic costs were string copies inside CPython (a run of encoded-words, a folded header
rebuilt piece by piece), which no wrapper can count, so each test times an input and one eight
times larger in the same test, best of several calls, and asserts the ratio is far below the 64
that quadratic work gives (linear work gives about 8). The absolute times never matter.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from time import perf_counter

from mm7.core.limits import Limits
from mm7.core.mime import parse_entity
from mm7.core.values import decode_rfc2047

WIDE = Limits(max_total_bytes=64 << 20, max_decoded_bytes=64 << 20, max_header_bytes=64 << 20)
#: t(8n) / t(n) above this is super-linear: quadratic work gives 64, linear about 8
MAX_RATIO = 20


def _best(fn: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = perf_counter()
        fn()
        best = min(best, perf_counter() - start)
    return best


def _growth(build: Callable[[int], Callable[[], object]], n: int) -> float:
    small, large = build(n), build(8 * n)
    small()
    large()
    return _best(large) / _best(small)


def test_rfc2047_subject_of_many_words_is_linear() -> None:
    subject = "=?utf-8?B?w6k=?= " * 3
    assert decode_rfc2047(subject) == "ééé "  # the space after the last word is text

    def build(n: int) -> Callable[[], object]:
        text = "=?utf-8?B?w6k=?= " * n
        return lambda: decode_rfc2047(text)

    ratio = _growth(build, 8_000)
    assert ratio < MAX_RATIO, f"8x the encoded words took {ratio:.1f}x the time"


def test_rfc2047_undecodable_run_is_kept_whole_and_linear() -> None:
    # a run of words that only fails when decoded together keeps its original text exactly
    broken = "=?utf-8?Q?=C3?= =?utf-8?Q?=28?="
    assert decode_rfc2047(f"a {broken} b") == f"a {broken} b"

    def build(n: int) -> Callable[[], object]:
        text = "=?utf-8?Q?=FF?= " * n  # one run that never decodes: its text is given back
        return lambda: decode_rfc2047(text)

    text = "=?utf-8?Q?=FF?= " * 4
    assert decode_rfc2047(text) == text
    ratio = _growth(build, 8_000)
    assert ratio < MAX_RATIO, f"8x the encoded words took {ratio:.1f}x the time"


def test_header_folded_over_many_lines_is_linear() -> None:
    part, _ = parse_entity(b"X-Long: a\r\n b\r\n\tc\r\nContent-Type: text/plain\r\n\r\nbody", WIDE)
    assert part.header("X-Long") == "a b c"
    assert part.content_type.mime_type == "text/plain"

    def build(n: int) -> Callable[[], object]:
        raw = b"X-Long: a\r\n" + b" b\r\n" * n + b"Content-Type: text/plain\r\n\r\nbody"
        return lambda: parse_entity(raw, WIDE)

    # at this size the quadratic join gave 57x for 8x the lines and the linear one gives 8x:
    # the same margin as the other tests, far from both
    ratio = _growth(build, 64_000)
    assert ratio < MAX_RATIO, f"8x the folded lines took {ratio:.1f}x the time"
