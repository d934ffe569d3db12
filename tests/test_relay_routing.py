"""Which hook an MO goes to (mm7.service.relay.routing), and the stop/start words."""

from __future__ import annotations

import pytest

from mm7.service.config.settings import RelayHook, RelayRoute, RelaySettings, RouteMatch
from mm7.service.relay.routing import (
    MoFacts,
    choose_route,
    first_word,
    opt_out_word,
    status_hook_for,
)
from mm7.transport.link import Secret

HOOKS = tuple(
    RelayHook(name=n, url=f"http://127.0.0.1:9/{n}", secret=Secret("s"))
    for n in ("a", "b", "c", "status", "default-status")
)


def settings(*routes: RelayRoute, default: RelayRoute | None = None) -> RelaySettings:
    return RelaySettings(hooks=HOOKS, routes=routes, default_route=default)


def route(
    name: str, hook: str = "a", status_hook: str | None = None, **match: object
) -> RelayRoute:
    return RelayRoute(
        name=name,
        hook=hook,
        match=RouteMatch(**match),  # type: ignore[arg-type]
        status_hook=status_hook,
    )


def facts(*recipients: str, link: str = "carrier", **kwargs: object) -> MoFacts:
    return MoFacts(link=link, recipients=recipients, **kwargs)  # type: ignore[arg-type]


def chosen(s: RelaySettings, mo: MoFacts) -> str | None:
    found = choose_route(s, mo)
    return found.name if found is not None else None


@pytest.mark.parametrize(
    ("prefixes", "recipient", "hit"),
    [
        (("+4915",), "+4915112345678", True),
        (("4915",), "+4915112345678", True),
        (("+4915",), "4915112345678/TYPE=PLMN", True),
        (("4915",), "+49 151 1234", True),
        (("4916",), "+4915112345678", False),
        (("4915",), "12345", False),
        (("4915",), "someone@example.com", False),
        (("4915",), "4915fan@example.com", False),  # an e-mail address is not a number
        (("1",), "user1@example.com", False),
        (("4915",), "tel:+49-151-1234", True),
    ],
)
def test_recipient_prefixes(prefixes: tuple[str, ...], recipient: str, hit: bool) -> None:
    s = settings(route("de", recipient_prefixes=prefixes))
    assert chosen(s, facts(recipient)) == ("de" if hit else None)


def test_any_recipient_may_match_a_prefix() -> None:
    s = settings(route("de", recipient_prefixes=("4915",)))
    assert chosen(s, facts("12345", "+4915100000")) == "de"


@pytest.mark.parametrize(
    ("recipient", "hit"),
    [
        ("12345", True),
        ("12345/TYPE=PLMN", True),
        ("12345/type=plmn", True),
        ("123456", False),
        ("1234", False),
    ],
)
def test_short_codes_match_exactly(recipient: str, hit: bool) -> None:
    s = settings(route("sc", short_codes=("12345",)))
    assert chosen(s, facts(recipient)) == ("sc" if hit else None)


def test_service_codes() -> None:
    s = settings(route("svc", service_codes=("svc-9",)))
    assert chosen(s, facts("12345", service_code="svc-9")) == "svc"
    assert chosen(s, facts("12345", service_code="svc-1")) is None
    assert chosen(s, facts("12345")) is None


def test_applic_ids_match_applic_id_or_reply_applic_id() -> None:
    s = settings(route("app", applic_ids=("com.example.app",)))
    assert chosen(s, facts("1", applic_id="com.example.app")) == "app"
    assert chosen(s, facts("1", reply_applic_id="com.example.app")) == "app"
    assert chosen(s, facts("1", applic_id="other", reply_applic_id="another")) is None
    assert chosen(s, facts("1")) is None


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("PROMO", True),
        ("promo code 42", True),
        ("  Promo! win", True),
        ('"promo," said she', True),
        ("PROMO\nsecond line", True),
        ("promotion", False),
        ("the promo", False),
        ("", False),
        (None, False),
    ],
)
def test_keywords_compare_the_first_word(text: str | None, hit: bool) -> None:
    s = settings(route("kw", keywords=("PROMO",)))
    assert chosen(s, facts("12345", text=text)) == ("kw" if hit else None)


def test_first_word() -> None:
    assert first_word("  hola! amigo") == "HOLA"
    assert first_word("...") is None
    assert first_word("   ") is None
    assert first_word("(Win) now") == "WIN"


def test_links() -> None:
    s = settings(route("l", links=("carrier",)))
    assert chosen(s, facts("1", link="carrier")) == "l"
    assert chosen(s, facts("1", link="other")) is None


def test_every_criterion_of_a_route_must_match() -> None:
    s = settings(route("both", short_codes=("12345",), keywords=("PROMO",), links=("carrier",)))
    assert chosen(s, facts("12345", text="promo")) == "both"
    assert chosen(s, facts("12345", text="hello")) is None
    assert chosen(s, facts("54321", text="promo")) is None
    assert chosen(s, facts("12345", text="promo", link="other")) is None


def test_the_first_matching_route_wins_then_the_default() -> None:
    default = RelayRoute(name="default", hook="c")
    s = settings(
        route("promo", hook="a", keywords=("PROMO",)),
        route("sc", hook="b", short_codes=("12345",)),
        default=default,
    )
    assert chosen(s, facts("12345", text="promo")) == "promo"
    assert chosen(s, facts("12345", text="hi")) == "sc"
    found = choose_route(s, facts("99999", text="hi"))
    assert found is default and found.hook == "c"
    reordered = settings(*reversed(s.routes), default=default)
    assert chosen(reordered, facts("12345", text="promo")) == "sc"


def test_no_route_and_no_default_is_none() -> None:
    assert choose_route(settings(route("sc", short_codes=("1",))), facts("2")) is None
    assert choose_route(settings(), facts("2")) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stop", ("stop", "STOP")),
        (" Stop. ", ("stop", "STOP")),
        ("STOP!", ("stop", "STOP")),
        ("unsubscribe", ("stop", "UNSUBSCRIBE")),
        ("\nQuit\n", ("stop", "QUIT")),
        ("start", ("start", "START")),
        ("Unstop", ("start", "UNSTOP")),
        ("STOP please", None),
        ("please stop", None),
        ("stopp", None),
        ("stop stop", None),
        ("", None),
        (None, None),
        ("...", None),
    ],
)
def test_opt_out_word_is_the_whole_text(text: str | None, expected: tuple[str, str] | None) -> None:
    assert opt_out_word(RelaySettings(), text) == expected


def test_opt_out_words_are_configurable() -> None:
    s = RelaySettings(stop_words=("HALT",), start_words=("RESUME",))
    assert opt_out_word(s, "halt") == ("stop", "HALT")
    assert opt_out_word(s, "resume.") == ("start", "RESUME")
    assert opt_out_word(s, "stop") is None


def test_status_hook_for_a_link() -> None:
    s = settings(
        route("no-status", links=("carrier",)),
        route("carrier", links=("carrier",), status_hook="status"),
        route("other", links=("other",), status_hook="b"),
        default=RelayRoute(name="default", hook="c", status_hook="default-status"),
    )
    assert status_hook_for(s, "carrier") == "status"
    assert status_hook_for(s, "other") == "b"
    assert status_hook_for(s, "third") == "default-status"
    assert status_hook_for(s, None) == "default-status"
    # a route without links never names a link's status hook
    unlinked = settings(route("kw", keywords=("X",), status_hook="status"))
    assert status_hook_for(unlinked, "carrier") is None
    assert status_hook_for(settings(default=RelayRoute(name="d", hook="c")), "carrier") is None
