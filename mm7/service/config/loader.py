"""The gateway's configuration: one TOML file (conf/gateway.toml) read into frozen dataclasses.

``load_config(path)`` reads the file with stdlib ``tomllib`` and validates everything at start:
every error is one ``ConfigError`` line naming the file and the key path, e.g.
``conf/gateway.toml: links.carrier-a.tps: expected a positive number, got "fast"``. Unknown keys
are refused by name (with a "did you mean"), so a typo never passes silently. The transport
objects are built while loading (``LinkConfig``, ``Peer``, ``InboundConfig``), so what they refuse
is refused at start too, and ``GatewayConfig.link_configs()`` / ``.inbound_config()`` hand them
out. ``GatewayConfig.route(recipient)`` picks the link for a recipient by prefix rules.

Secrets and the environment
---------------------------
Every secret key ``X`` (``password``, ``token``, ``key_password``, ``key``, ``secret``,
``dsn``, ``media_url_secret``) may instead be given as ``X_env = "VARIABLE"``: the value is read
from that environment variable when the configuration is loaded. That is the one scheme: the file
says which variable holds which secret, so ``grep _env`` lists everything a deployment must
provide. Giving both ``X`` and ``X_env`` is refused; an ``X_env`` naming a variable that is not
set (or is empty) is refused with the key and the variable's name. Secrets are ``Secret`` values:
masked (``***``) in repr, str, logs and error messages; ``reveal()`` is for the wire only. A
secret written in the file itself works (tests, throw-away setups) but should not be used for
anything real.

The one exception is the demo API key: an ``[[api.keys]]`` entry with ``generate_if_unset =
true`` whose ``key_env`` variable is not set gets a random key for this run (``ApiKey.generated``
is True; the service prints it once at start). It is allowed only while the API listens on a
loopback address, so an out-of-the-box gateway works without a secret in the file and never
opens an unauthenticated or guessable API to a network.

Files
-----
Named dialects are those shipped with mm7 (``mm7/conf/dialects.toml``) and those of
``dialects_file`` (default: ``dialects.toml`` beside the config file, when present), which add to
them and override them by name; each is a ``[dialects.NAME]`` table of ``mm7.core.dialect.Dialect``
fields whose ``extends`` names a built-in dialect or another named one. Content profiles are
looked up as ``profiles/<name>.toml`` beside the config file, then in
``mm7.content.profile.PROFILE_DIRS`` (the working directory's conf/profiles, then the shipped ones).
Other relative paths (store.path, TLS files) are relative to the working directory, as on the
command line; TLS files must exist when the configuration is loaded.

Keys and defaults
-----------------
``conf/gateway.toml`` is the key reference: every key this loader reads is in it, under its
table, active or as a commented line with a note. Each default is stated once, on the dataclass
field that declares it (``settings``, or the transport's ``LinkConfig``, ``TLSConfig``,
``InboundConfig``, ``Peer``, ``PeerAuth``), where a ``#:`` note says what it is; the loader reads
it from there (``_default``). ``tests/test_config_reference.py`` keeps the file in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import phonenumbers

from mm7.content.profile import PROFILE_DIRS, ProfileError, load_profile, parse_size
from mm7.core.dialect import DIALECTS, STRICT_3GPP, Dialect, DialectError
from mm7.core.errors import MM7Error
from mm7.core.limits import DEFAULT_LIMITS
from mm7.core.shipped import shipped
from mm7.core.versions import ALL, get_version
from mm7.service.config.reader import Context, Table, show
from mm7.service.config.settings import (
    API_ROLES,
    DEFAULT_API_LISTEN,
    DEFAULT_INBOUND_LISTEN,
    NUMBER_CHECKS,
    SIGNATURE_SCHEMES,
    ApiKey,
    ApiRole,
    ApiSettings,
    ClusterSettings,
    FallbackSettings,
    FetchSettings,
    GatewayConfig,
    HostingSettings,
    HttpSmsSettings,
    InboundSettings,
    InboundTLS,
    LinkSettings,
    Listen,
    LoggingSettings,
    MetricsSettings,
    NumberCheck,
    PeerSettings,
    RelayHook,
    RelayRoute,
    RelaySettings,
    RetrySettings,
    RouteMatch,
    SenderRates,
    SignatureScheme,
    SmppSettings,
    SmsLinkSettings,
    StoreSettings,
    whsec_key,
)
from mm7.service.errors import ConfigError
from mm7.transport.classify import Overrides
from mm7.transport.inbound_auth import ClientCertRule, PeerAuth, normalise_san
from mm7.transport.link import (
    BasicAuth,
    BearerAuth,
    ClientAuth,
    DigestAuth,
    LinkConfig,
    Secret,
    TLSConfig,
)
from mm7.transport.listener import ListenerLimits
from mm7.transport.server import InboundConfig, Peer

__all__ = ["load_config", "load_store_settings"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_PREFIX = re.compile(r"\+?[0-9]+")
_INSTANCE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
#: seconds: the shortest [cluster] lease_ttl (renewals every third of it must be affordable)
MIN_LEASE_TTL = 1.0
#: seconds: the longest [hosting] ttl (ten years; a link's expiry is 32-bit unix seconds)
MAX_HOSTING_TTL = 3650 * 86400.0
#: the shortest fallback SMS: room for a hosted page's link (about 60 characters) and a word
MIN_FALLBACK_TEXT = 70


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, env: Mapping[str, str] = os.environ) -> GatewayConfig:
    """Read and validate a gateway configuration file; ConfigError names the file and the key."""
    source = Path(path)
    ctx = Context(source, env)
    data = _read_toml(ctx)
    return _Loader(ctx, data).load()


def load_store_settings(path: str | Path, env: Mapping[str, str] = os.environ) -> StoreSettings:
    """Only the ``[store]`` table of a gateway configuration file, validated as ``load_config``
    does (for commands that work on the store alone: the other tables' secrets are not needed)."""
    ctx = Context(Path(path), env)
    return _store(Table(_read_toml(ctx), "", ctx).table("store"))


def _read_toml(ctx: Context) -> dict[str, Any]:
    try:
        text = ctx.source.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ctx.error("", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ctx.error("", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.error("", f"not valid TOML: {exc}") from None


class _Dialects:
    """Named dialects: the built-in ones and those of the dialects file, built once each."""

    def __init__(self, sources: Mapping[str, tuple[Context, Any]]) -> None:
        #: name -> (the file it is defined in, its table)
        self._sources = sources
        self._tables = {name: table for name, (_, table) in sources.items()}
        self._built: dict[str, Dialect] = {}
        for name in sources:
            self.get(name, "", ())

    def names(self) -> list[str]:
        return sorted({*DIALECTS, *self._tables})

    def get(
        self, name: str, where: str, stack: tuple[str, ...], ctx: Context | None = None
    ) -> Dialect:
        """The dialect ``name``; ``where``/``ctx`` locate the reference for the error message."""
        if name in self._built:
            return self._built[name]
        if name in self._sources:
            file_ctx = self._sources[name][0]
            here = f"dialects.{name}"
            if name in stack:
                raise file_ctx.error(here, f"extends itself ({' -> '.join((*stack, name))})")
            table = self._tables[name]
            if not isinstance(table, Mapping):
                raise file_ctx.error(here, f"expected a table, got {show(table)}")
            values = dict(table)
            base = STRICT_3GPP
            if "extends" in values:
                parent = values.pop("extends")
                if not isinstance(parent, str):
                    raise file_ctx.error(f"{here}.extends", f"expected a name, got {show(parent)}")
                base = self.get(parent, f"{here}.extends", (*stack, name), file_ctx)
            values.setdefault("name", name)
            try:
                dialect = Dialect.from_mapping(values, base=base)
            except DialectError as exc:
                raise file_ctx.error(here, str(exc)) from None
            self._built[name] = dialect
            return dialect
        if name in DIALECTS:
            return DIALECTS[name]
        error_ctx = ctx or next((c for c, _ in self._sources.values()), None)
        assert error_ctx is not None
        raise error_ctx.error(
            where, f"unknown dialect {show(name)} (known: {', '.join(self.names())})"
        )

    def from_value(self, value: Any, where: str, ctx: Context, default_name: str) -> Dialect:
        """A dialect from a config value: a name, or an inline table (``extends`` a name)."""
        if isinstance(value, str):
            return self.get(value, where, (), ctx)
        if not isinstance(value, Mapping):
            raise ctx.error(where, f"expected a dialect name or a table, got {show(value)}")
        values = dict(value)
        base = STRICT_3GPP
        if "extends" in values:
            parent = values.pop("extends")
            if not isinstance(parent, str):
                raise ctx.error(f"{where}.extends", f"expected a name, got {show(parent)}")
            base = self.get(parent, f"{where}.extends", (), ctx)
        values.setdefault("name", default_name)
        try:
            return Dialect.from_mapping(values, base=base)
        except DialectError as exc:
            raise ctx.error(where, str(exc)) from None


class _Loader:
    """One load: the top-level table, the dialects, the profile directories."""

    def __init__(self, ctx: Context, data: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.top = Table(data, "", ctx)
        self.profile_dirs = (ctx.source.parent / "profiles", *PROFILE_DIRS)
        self.dialects = self._dialects()

    def _dialects(self) -> _Dialects:
        """The named dialects: those shipped with mm7 (``mm7/conf/dialects.toml``), then those of
        the deployment's dialects file, which add to them and override them by name."""
        sources = dict(self._dialect_tables(shipped("dialects.toml")))
        value = self.top.opt_str("dialects_file")
        if value is None:
            path = self.ctx.source.parent / "dialects.toml"
            if not path.is_file():
                return _Dialects(sources)
        else:
            path = Path(value)
            if not path.is_absolute():
                path = self.ctx.source.parent / path
            if not path.is_file():
                raise self.top.error("dialects_file", f"no such file: {path}")
        sources.update(self._dialect_tables(path))
        return _Dialects(sources)

    def _dialect_tables(self, path: Path) -> dict[str, tuple[Context, Any]]:
        """The ``[dialects.NAME]`` tables of one file, each with the file's context."""
        if not path.is_file():
            return {}
        file_ctx = Context(path, self.ctx.env)
        data = _read_toml(file_ctx)
        file_top = Table(data, "", file_ctx)
        tables = file_top.raw("dialects") or {}
        if not isinstance(tables, Mapping):
            raise file_ctx.error("dialects", f"expected tables, got {show(tables)}")
        file_top.finish()
        clash = sorted(set(tables) & set(DIALECTS))
        if clash:
            raise file_ctx.error(f"dialects.{clash[0]}", "is the name of a built-in dialect")
        return {name: (file_ctx, table) for name, table in tables.items()}

    def load(self) -> GatewayConfig:
        links = tuple(self._link(name, t) for name, t in self.top.named_tables("links"))
        if not links:
            raise self.top.error("links", "at least one link is required")
        self._check_routing(links)
        inbound = self._inbound(self.top.table("inbound"), links)
        api = self._api(self.top.table("api"))
        store = _store(self.top.table("store"))
        relay = self._relay(self.top.table("relay"), links)
        logging = self._logging(self.top.table("logging"))
        metrics = self._metrics(self.top.table("metrics"))
        cluster = self._cluster(self.top.table("cluster"))
        hosting = self._hosting(self.top.table("hosting"), links)
        sms_links = tuple(_sms_link(n, t) for n, t in self.top.named_tables("sms_links"))
        fallback = self._fallback(self.top.table("fallback"), links, sms_links, hosting)
        self.top.finish()
        return GatewayConfig(
            source=self.ctx.source,
            links=links,
            inbound=inbound,
            api=api,
            store=store,
            relay=relay,
            logging=logging,
            metrics=metrics,
            cluster=cluster,
            hosting=hosting,
            sms_links=sms_links,
            fallback=fallback,
        )

    # -- links

    def _link(self, name: str, t: Table) -> LinkSettings:
        url = t.req_str("url")
        dialect = STRICT_3GPP
        if t.has("dialect"):
            dialect = self.dialects.from_value(
                t.raw("dialect"), t.key_path("dialect"), self.ctx, f"{name}-dialect"
            )
        auth = self._auth(t.opt_table("auth"))
        tls = self._link_tls(t.opt_table("tls"))
        classification = Overrides()
        if t.has("classification"):
            raw = t.raw("classification")
            if not isinstance(raw, Mapping):
                raise t.error("classification", f"expected a table, got {show(raw)}")
            try:
                classification = Overrides.from_mapping(raw)
            except ConfigError:
                raise
            except MM7Error as exc:
                raise t.error("classification", str(exc)) from None
        profile = None
        profile_name = t.opt_str("profile")
        if profile_name is not None:
            try:
                profile = load_profile(profile_name, dirs=self.profile_dirs)
            except ProfileError as exc:
                raise t.error("profile", str(exc)) from None
        breaker = t.table("breaker")
        threshold = breaker.integer(
            "threshold", _default(LinkConfig, "breaker_threshold"), minimum=0
        )
        cooldown = breaker.duration(
            "cooldown", _default(LinkConfig, "breaker_cooldown"), allow_zero=True
        )
        breaker.finish()
        retry_t = t.table("retry")
        retry = RetrySettings(
            initial_backoff=retry_t.duration(
                "initial_backoff", _default(RetrySettings, "initial_backoff")
            ),
            max_backoff=retry_t.duration("max_backoff", _default(RetrySettings, "max_backoff")),
            max_age=retry_t.duration("max_age", _default(RetrySettings, "max_age")),
        )
        if retry.max_backoff < retry.initial_backoff:
            raise retry_t.error("max_backoff", "must be >= initial_backoff")
        retry_t.finish()
        tps = t.opt_number("tps")
        kwargs: dict[str, Any] = {
            "name": name,
            "url": url,
            "dialect": dialect,
            "auth": auth,
            "tls": tls,
            "request_timeout": t.duration(
                "request_timeout", _default(LinkConfig, "request_timeout")
            ),
            "connect_timeout": t.duration(
                "connect_timeout", _default(LinkConfig, "connect_timeout")
            ),
            "keepalive_timeout": t.duration(
                "keepalive_timeout", _default(LinkConfig, "keepalive_timeout")
            ),
            "tps": tps,
            "burst": t.integer("burst", _default(LinkConfig, "burst")),
            "max_in_flight": t.integer("max_in_flight", _default(LinkConfig, "max_in_flight")),
            "max_recipients": t.opt_int("max_recipients"),
            "classification": classification,
            "breaker_threshold": threshold,
            "breaker_cooldown": cooldown,
            "wire_log": t.boolean("wire_log", _default(LinkConfig, "wire_log")),
        }
        user_agent = t.opt_str("user_agent")
        if user_agent is not None:
            kwargs["user_agent"] = user_agent
        try:
            link = LinkConfig(**kwargs)
        except ConfigError:
            raise
        except MM7Error as exc:
            # LinkConfig's messages start with "link 'name': "; the path says that already
            text = str(exc).removeprefix(f"link {name!r}: ")
            raise t.error(None, text) from None
        settings = LinkSettings(
            name=name,
            link=link,
            profile=profile,
            prefixes=t.str_list("prefixes", pattern=_PREFIX, what="digits with an optional '+'"),
            default=t.boolean("default", _default(LinkSettings, "default")),
            vasp_id=t.opt_str("vasp_id"),
            vas_id=t.opt_str("vas_id"),
            sender_address=t.opt_str("sender_address"),
            service_code=t.opt_str("service_code"),
            default_region=_region(t, "default_region"),
            retry=retry,
            sender_tps=_sender_rates(t.opt_table("sender_tps")),
            fallback=t.str_default(
                "fallback", _default(LinkSettings, "fallback"), choices=("sms", "none")
            ),
            fallback_sms_link=t.opt_str("fallback_sms_link"),
            fallback_text_max=t.integer(
                "fallback_text_max",
                _default(LinkSettings, "fallback_text_max"),
                minimum=MIN_FALLBACK_TEXT,
            ),  # fmt: skip
        )
        if settings.fallback == "sms" and settings.fallback_sms_link is None:
            raise t.error(
                "fallback_sms_link",
                'required with fallback = "sms": the name of the [sms_links.NAME] to send through',
            )
        t.finish()
        return settings

    def _auth(self, t: Table | None) -> ClientAuth | None:
        if t is None:
            return None
        kind = t.req_str("type", choices=("basic", "digest", "bearer"))
        auth: ClientAuth
        try:
            if kind == "bearer":
                token = t.secret("token", required=True)
                assert token is not None
                auth = BearerAuth(token)
            else:
                username = t.req_str("username")
                password = t.secret("password", required=True)
                assert password is not None
                auth = (
                    BasicAuth(username, password)
                    if kind == "basic"
                    else (DigestAuth(username, password))
                )
        except ConfigError:
            raise
        except MM7Error as exc:
            raise t.error(None, str(exc)) from None
        t.finish()
        return auth

    def _file(self, t: Table, key: str) -> Path | None:
        value = t.opt_str(key)
        if value is None:
            return None
        path = Path(value)
        if not path.is_file():
            raise t.error(key, f"no such file: {value}")
        return path

    def _link_tls(self, t: Table | None) -> TLSConfig | None:
        if t is None:
            return None
        try:
            tls = TLSConfig(
                ca_file=self._file(t, "ca_file"),
                cert_file=self._file(t, "cert_file"),
                key_file=self._file(t, "key_file"),
                key_password=t.secret("key_password", required=False),
                server_hostname=t.opt_str("server_hostname"),
                expiry_warning_days=t.integer(
                    "expiry_warning_days", _default(TLSConfig, "expiry_warning_days"), minimum=0
                ),
            )
        except ConfigError:
            raise
        except MM7Error as exc:
            raise t.error(None, str(exc).removeprefix("tls: ")) from None
        t.finish()
        return tls

    def _check_routing(self, links: tuple[LinkSettings, ...]) -> None:
        defaults = [link.name for link in links if link.default]
        if len(defaults) > 1:
            raise self.ctx.error(
                f"links.{defaults[1]}.default", f"only one default link (also {defaults[0]})"
            )
        owner: dict[str, str] = {}
        for link in links:
            for prefix in link.prefixes:
                bare = prefix.removeprefix("+")
                if bare in owner:
                    raise self.ctx.error(
                        f"links.{link.name}.prefixes",
                        f"prefix {show(prefix)} is also routed to link {owner[bare]!r}",
                    )
                owner[bare] = link.name

    # -- inbound

    def _inbound(self, t: Table, links: tuple[LinkSettings, ...]) -> InboundSettings:
        listen = _listen(t, "listen", DEFAULT_INBOUND_LISTEN)
        dialect = STRICT_3GPP
        if t.has("dialect"):
            dialect = self.dialects.from_value(
                t.raw("dialect"), t.key_path("dialect"), self.ctx, "inbound-dialect"
            )
        limits = DEFAULT_LIMITS
        if t.has("max_body_bytes"):
            limits = dataclasses.replace(
                DEFAULT_LIMITS, max_total_bytes=_size(t, "max_body_bytes", 0)
            )
        health = t.opt_str("health_path")
        peers = tuple(self._peer(name, p, links) for name, p in t.named_tables("peers"))
        if not peers:
            raise t.error("peers", "at least one peer is required (who may call the endpoint)")
        tls = self._inbound_tls(t.opt_table("tls"))
        try:
            config = InboundConfig(
                path=t.str_default("path", _default(InboundConfig, "path")),
                peers=tuple(p.peer for p in peers),
                limits=limits,
                oversize_http_status=t.integer(
                    "oversize_http_status", _default(InboundConfig, "oversize_http_status")
                ),
                health_path=health
                if health is not None
                else _default(InboundConfig, "health_path"),
                dialect=dialect,
            )
        except ConfigError:
            raise
        except ValueError as exc:
            raise t.error(None, str(exc).replace("InboundConfig.", "")) from None
        if tls is None:
            for p in peers:
                if p.peer.auth.client_cert is not None:
                    raise t.error(
                        f"peers.{p.name}.client_cert", "needs [inbound.tls] with client_ca"
                    )
        bounds = _limits(t)
        t.finish()
        return InboundSettings(listen=listen, config=config, peers=peers, tls=tls, limits=bounds)

    def _peer(self, name: str, t: Table, links: tuple[LinkSettings, ...]) -> PeerSettings:
        names = [ln.name for ln in links]
        served = t.str_list("links") if t.has("links") else ()
        if t.has("links") and not served:
            raise t.error("links", "must name at least one link")
        if t.has("links") and t.has("link"):
            raise t.error("links", "give link or links, not both")
        for index, other in enumerate(served):
            if other not in names:
                raise self.ctx.error(
                    f"{t.key_path('links')}[{index}]",
                    f"no link named {show(other)} (links: {', '.join(names)})",
                )
        link = served[0] if served else t.str_default("link", name)
        if link not in names:
            key = "link" if t.has("link") else None
            raise t.error(
                key,
                f"no link named {show(link)} (links: {', '.join(names)}); "
                "set link = the link whose reports this peer sends",
            )
        dialect = STRICT_3GPP
        if t.has("dialect"):
            dialect = self.dialects.from_value(
                t.raw("dialect"), t.key_path("dialect"), self.ctx, f"{name}-dialect"
            )
        versions = ALL
        tokens = t.str_list("versions")
        if t.has("versions"):
            if not tokens:
                raise t.error("versions", "must name at least one version")
            found: set[str] = set()
            for index, token in enumerate(tokens):
                try:
                    found.add(get_version(token).token)
                except KeyError as exc:
                    raise self.ctx.error(
                        f"{t.key_path('versions')}[{index}]", exc.args[0]
                    ) from None
            versions = frozenset(found)
        basic: tuple[str, str] | None = None
        basic_t = t.opt_table("basic")
        if basic_t is not None:
            username = basic_t.req_str("username")
            if ":" in username:
                raise basic_t.error("username", "a ':' is not allowed in the username")
            password = basic_t.secret("password", required=True)
            assert password is not None
            basic_t.finish()
            basic = (username, password.reveal())
        allow = t.str_list("allow")
        for index, network in enumerate(allow):
            try:
                ipaddress.ip_network(network.strip(), strict=False)
            except ValueError:
                raise self.ctx.error(
                    f"{t.key_path('allow')}[{index}]",
                    f"expected an address or CIDR network, got {show(network)}",
                ) from None
        client_cert = None
        cert_t = t.opt_table("client_cert")
        if cert_t is not None:
            subjects = cert_t.str_list("subjects")
            sans = cert_t.str_list("sans")
            for index, entry in enumerate(sans):
                try:
                    normalise_san(entry)
                except ValueError as exc:
                    raise self.ctx.error(f"{cert_t.key_path('sans')}[{index}]", str(exc)) from None
            issuers = cert_t.str_list("issuers")
            for index, issuer in enumerate(issuers):
                if not Path(issuer).is_file():
                    raise self.ctx.error(
                        f"{cert_t.key_path('issuers')}[{index}]", f"no such file: {issuer}"
                    )
            try:
                client_cert = ClientCertRule.from_files(subjects, issuers, sans)
            except ConfigError:
                raise
            except (ValueError, OSError) as exc:
                raise cert_t.error("issuers", f"cannot read the CA certificates: {exc}") from None
            cert_t.finish()
        try:
            auth = PeerAuth.of(
                basic=basic,
                allow=allow,
                client_cert=client_cert,
                realm=t.str_default("realm", _default(PeerAuth, "realm")),
            )
            peer = Peer(
                name=name,
                auth=auth,
                dialect=dialect,
                versions=versions,
                strict=t.boolean("strict", _default(Peer, "strict")),
                errors_as_fault=t.boolean("errors_as_fault", _default(Peer, "errors_as_fault")),
                wire_log=t.boolean("wire_log", _default(Peer, "wire_log")),
            )
        except ConfigError:
            raise
        except ValueError as exc:
            raise t.error(None, str(exc)) from None
        t.finish()
        return PeerSettings(name=name, link=link, peer=peer, links=tuple(dict.fromkeys(served)))

    def _inbound_tls(self, t: Table | None) -> InboundTLS | None:
        if t is None:
            return None
        cert = self._file(t, "cert_file")
        key = self._file(t, "key_file")
        if cert is None or key is None:
            raise t.error(None, "cert_file and key_file are both required")
        tls = InboundTLS(
            cert_file=cert,
            key_file=key,
            client_ca=self._file(t, "client_ca"),
            require_client_cert=t.boolean(
                "require_client_cert", _default(InboundTLS, "require_client_cert")
            ),
        )
        t.finish()
        return tls

    # -- api, store

    def _api(self, t: Table) -> ApiSettings:
        listen = _listen(t, "listen", DEFAULT_API_LISTEN)
        keys: list[ApiKey] = []
        seen: dict[str, str] = {}
        for name, k in t.named_tables("keys"):
            generate = k.boolean("generate_if_unset", False)
            env_name = k.env_named("key")
            if generate and (env_name is None or k.has("key")):
                raise k.error("generate_if_unset", "needs key_env (the variable it stands in for)")
            generated = False
            if generate and env_name is not None and env_name not in self.ctx.env:
                if not listen.is_loopback:
                    raise k.error(
                        "generate_if_unset",
                        f"only allowed while api.listen is a loopback address (it is {listen}); "
                        f"set {env_name}",
                    )
                k.raw("key_env")
                value: Secret | None = Secret(secrets.token_urlsafe(24))
                generated = True
            else:
                value = k.secret("key", required=True)
            assert value is not None
            if value.reveal() in seen:
                raise k.error("key", f"the same key as api.keys.{seen[value.reveal()]}")
            seen[value.reveal()] = name
            keys.append(
                ApiKey(
                    name=name,
                    key=value,
                    generated=generated,
                    env=env_name,
                    role=_role(k),
                    allow_private=k.boolean("allow_private", _default(ApiKey, "allow_private")),
                    default_region=_region(k, "default_region"),
                    number_check=None
                    if (check := k.opt_str("number_check", choices=NUMBER_CHECKS)) is None
                    else _number_check(check),
                    max_per_second=k.opt_int("max_per_second"),
                    max_per_day=k.opt_int("max_per_day"),
                )
            )
            k.finish()
        if not keys:
            raise t.error("keys", "at least one API key is required")
        f = t.table("fetch")
        schemes = f.str_list("schemes") if f.has("schemes") else _default(FetchSettings, "schemes")
        for index, scheme in enumerate(schemes):
            if scheme not in ("http", "https"):
                raise self.ctx.error(
                    f"{f.key_path('schemes')}[{index}]",
                    f"expected http or https, got {show(scheme)}",
                )
        fetch = FetchSettings(
            max_bytes=_size(f, "max_bytes", _default(FetchSettings, "max_bytes")),
            timeout=f.duration("timeout", _default(FetchSettings, "timeout")),
            schemes=schemes,
            allow_private=f.boolean("allow_private", _default(FetchSettings, "allow_private")),
        )
        f.finish()
        api = ApiSettings(
            listen=listen,
            keys=tuple(keys),
            max_request_bytes=_size(
                t, "max_request_bytes", _default(ApiSettings, "max_request_bytes")
            ),
            fetch=fetch,
            max_backlog=t.opt_int("max_backlog", minimum=1),
            limits=_limits(t),
            number_check=_number_check(
                t.str_default(
                    "number_check", _default(ApiSettings, "number_check"), choices=NUMBER_CHECKS
                )
            ),
        )
        t.finish()
        return api

    # -- relay

    def _relay(self, t: Table, links: tuple[LinkSettings, ...]) -> RelaySettings:
        hooks: list[RelayHook] = []
        for name, h in t.named_tables("hooks"):
            url = h.req_str("url")
            _check_url(h, "url", url)
            secret = h.secret("secret", required=True)
            assert secret is not None
            signature = h.str_default(
                "signature", _default(RelayHook, "signature"), choices=SIGNATURE_SCHEMES
            )
            if signature != "mm7":
                try:
                    whsec_key(secret.reveal())
                except ValueError as exc:
                    where = "secret_env" if h.has("secret_env") else "secret"
                    raise h.error(where, f"with signature = {show(signature)}: {exc}") from None
            hooks.append(
                RelayHook(
                    name=name,
                    url=url,
                    secret=secret,
                    signature=cast(SignatureScheme, signature),
                    concurrency=h.integer("concurrency", _default(RelayHook, "concurrency")),
                    ordered=h.boolean("ordered", _default(RelayHook, "ordered")),
                    timeout=h.duration("timeout", _default(RelayHook, "timeout")),
                )
            )
            h.finish()
        hook_names = [h.name for h in hooks]
        link_names = [ln.name for ln in links]
        routes: list[RelayRoute] = []
        for name, r in t.named_tables("routes"):
            route = self._route(name, r, hook_names, link_names, default=False)
            routes.append(route)
        default_t = t.opt_table("default_route")
        default = None
        if default_t is not None:
            default = self._route("default", default_t, hook_names, link_names, default=True)
        base = t.opt_str("media_url_base")
        if base is not None:
            _check_url(t, "media_url_base", base)
        relay = RelaySettings(
            hooks=tuple(hooks),
            routes=tuple(routes),
            default_route=default,
            stop_words=_words(t, "stop_words", _default(RelaySettings, "stop_words")),
            start_words=_words(t, "start_words", _default(RelaySettings, "start_words")),
            max_age=t.duration("max_age", _default(RelaySettings, "max_age")),
            initial_backoff=t.duration(
                "initial_backoff", _default(RelaySettings, "initial_backoff")
            ),
            max_backoff=t.duration("max_backoff", _default(RelaySettings, "max_backoff")),
            media_url_ttl=t.duration("media_url_ttl", _default(RelaySettings, "media_url_ttl")),
            retain=t.duration("retain", _default(RelaySettings, "retain")),
            media_url_base=base,
            media_url_secret=t.secret("media_url_secret", required=False),
        )
        overlap = sorted(set(relay.stop_words) & set(relay.start_words))
        if overlap:
            raise t.error("start_words", f"{show(overlap[0])} is also a stop word")
        t.finish()
        return relay

    def _route(
        self, name: str, r: Table, hooks: list[str], links: list[str], *, default: bool
    ) -> RelayRoute:
        hook = r.req_str("hook")
        if hook not in hooks:
            raise r.error(
                "hook", f"no hook named {show(hook)} (hooks: {', '.join(hooks) or 'none'})"
            )
        status_hook = r.opt_str("status_hook")
        if status_hook is not None and status_hook not in hooks:
            raise r.error("status_hook", f"no hook named {show(status_hook)}")
        media = r.str_default("media", _default(RelayRoute, "media"), choices=("url", "inline"))
        match = RouteMatch()
        if not default:
            match = RouteMatch(
                recipient_prefixes=r.str_list(
                    "recipient_prefixes", pattern=_PREFIX, what="digits with an optional '+'"
                ),
                short_codes=r.str_list("short_codes"),
                service_codes=r.str_list("service_codes"),
                applic_ids=r.str_list("applic_ids"),
                keywords=tuple(w.upper() for w in r.str_list("keywords")),
                links=r.str_list("links"),
            )
            for index, link in enumerate(match.links):
                if link not in links:
                    raise self.ctx.error(
                        f"{r.key_path('links')}[{index}]", f"no link named {show(link)}"
                    )
            if match.is_empty:
                raise r.error(
                    None,
                    "a route needs at least one of recipient_prefixes, short_codes, "
                    "service_codes, applic_ids, keywords, links (use [relay.default_route] "
                    "for everything else)",
                )
        r.finish()
        return RelayRoute(
            name=name,
            hook=hook,
            match=match,
            status_hook=status_hook,
            media="inline" if media == "inline" else "url",
        )

    # -- logging, metrics

    def _logging(self, t: Table) -> LoggingSettings:
        level = t.str_default("level", _default(LoggingSettings, "level"), choices=LOG_LEVELS)
        settings = LoggingSettings(
            level=level, json=t.boolean("json", _default(LoggingSettings, "json"))
        )
        t.finish()
        return settings

    def _metrics(self, t: Table) -> MetricsSettings:
        path = t.str_default("path", _default(MetricsSettings, "path"))
        if not path.startswith("/"):
            raise t.error("path", f"must start with '/', got {show(path)}")
        settings = MetricsSettings(
            enabled=t.boolean("enabled", _default(MetricsSettings, "enabled")),
            path=path,
            listen=_listen(t, "listen", None) if t.has("listen") else None,
            token=t.secret("token", required=False),
        )
        t.finish()
        return settings

    # -- cluster

    def _cluster(self, t: Table) -> ClusterSettings:
        instance = t.opt_str("instance")
        if instance is not None and not _INSTANCE.fullmatch(instance):
            raise t.error(
                "instance",
                f"expected 1 to 100 letters, digits, '.', '_', ':' or '-', got {show(instance)}",
            )
        lease_ttl = t.duration("lease_ttl", _default(ClusterSettings, "lease_ttl"))
        if lease_ttl < MIN_LEASE_TTL:
            raise t.error(
                "lease_ttl",
                f"must be at least {MIN_LEASE_TTL:g}s (it is renewed every third of it), "
                f"got {lease_ttl:g}s",
            )
        t.finish()
        return ClusterSettings(instance=instance, lease_ttl=lease_ttl)

    # -- SMS fallback

    def _fallback(
        self,
        t: Table,
        links: tuple[LinkSettings, ...],
        sms_links: tuple[SmsLinkSettings, ...],
        hosting: HostingSettings,
    ) -> FallbackSettings:
        """``[fallback]``, and the links' fallback checked against the SMS links and hosting:
        an unknown SMS link is refused by name, and so is a fallback with hosting off (the SMS
        carries the hosted page's link)."""
        names = [s.name for s in sms_links]
        for link in links:
            name = link.fallback_sms_link
            if name is None:
                continue
            where = f"links.{link.name}.fallback_sms_link"
            if name not in names:
                known = ", ".join(names) or "none configured"
                raise self.ctx.error(where, f"no [sms_links.{name}] (SMS links: {known})")
            if not hosting.enabled:
                raise self.ctx.error(
                    where,
                    "the SMS fallback sends the message's hosted page's link, but [hosting] is "
                    "not enabled: set [hosting] enabled = true, or remove fallback_sms_link",
                )
        initial = t.duration("initial_backoff", _default(FallbackSettings, "initial_backoff"))
        maximum = t.duration("max_backoff", _default(FallbackSettings, "max_backoff"))
        if maximum < initial:
            raise t.error("max_backoff", "must be >= initial_backoff")
        settings = FallbackSettings(
            max_age=t.duration("max_age", _default(FallbackSettings, "max_age")),
            initial_backoff=initial,
            max_backoff=maximum,
            concurrency=t.integer("concurrency", _default(FallbackSettings, "concurrency")),
            receipt_timeout=t.duration(
                "receipt_timeout", _default(FallbackSettings, "receipt_timeout"), allow_zero=True
            ),
        )
        t.finish()
        return settings

    # -- hosting

    def _hosting(self, t: Table, links: tuple[LinkSettings, ...]) -> HostingSettings:
        base = t.opt_str("url_base")
        if base is not None:
            _check_url(t, "url_base", base)
        ttl = t.duration("ttl", _default(HostingSettings, "ttl"))
        if ttl > MAX_HOSTING_TTL:
            raise t.error("ttl", f"must be at most {MAX_HOSTING_TTL / 86400:g}d, got {ttl:g}s")
        settings = HostingSettings(
            enabled=t.boolean("enabled", _default(HostingSettings, "enabled")),
            url_base=base.rstrip("/") if base is not None else None,
            ttl=ttl,
            secret=t.secret("secret", required=False),
        )
        t.finish()
        for link in links:
            if (
                link.profile is not None
                and link.profile.on_no_fit == "link"
                and not settings.enabled
            ):
                raise self.ctx.error(
                    f"links.{link.name}.profile",
                    f'profile {show(link.profile.name)} says too_big = "link" (a message that '
                    "cannot fit goes as text with a link to its hosted page), but [hosting] is "
                    'not enabled: set [hosting] enabled = true, or too_big = "refuse" in the '
                    "profile",
                )
        return settings


# --------------------------------------------------------------------------- small readers


#: the fields an HTTP SMS link's url template may name
SMS_URL_FIELDS = ("to", "from", "text", "coding", "charset", "dlr_url", "username", "password")


def _sms_link(name: str, t: Table) -> SmsLinkSettings:
    """One ``[[sms_links]]`` entry: type = "smpp" (an SMSC bind) or "http" (a sendsms URL)."""
    kind = t.req_str("type", choices=("smpp", "http"))
    settings: SmsLinkSettings
    if kind == "http":
        url = t.req_str("url")
        _check_url(t, "url", url)
        try:
            url.format_map(dict.fromkeys(SMS_URL_FIELDS, ""))
        except (KeyError, ValueError, IndexError) as exc:
            raise t.error(
                "url", f"bad template ({exc}); the fields are {{{'} {'.join(SMS_URL_FIELDS)}}}"
            ) from None
        dlr_base = t.str_default("dlr_url_base", _default(HttpSmsSettings, "dlr_url_base"))
        if dlr_base:
            _check_url(t, "dlr_url_base", dlr_base)
        settings = HttpSmsSettings(
            name=name,
            url=url,
            username=t.str_default("username", _default(HttpSmsSettings, "username")),
            password=t.secret("password", required=False),
            source_addr=t.str_default("source_addr", _default(HttpSmsSettings, "source_addr")),
            dlr_url_base=dlr_base,
            tps=t.number("tps", _default(HttpSmsSettings, "tps")),
            timeout=t.duration("timeout", _default(HttpSmsSettings, "timeout")),
        )
    else:
        port = t.opt_int("port")
        if port is None or port > 65535:
            raise t.error("port", "required: the SMSC's TCP port (1-65535)")
        codes = {
            key: t.integer(key, _default(SmppSettings, key), minimum=0)
            for key in ("source_ton", "source_npi", "dest_ton", "dest_npi")
        }
        for key, value in codes.items():
            if value > 255:
                raise t.error(key, f"must be 0-255 (an SMPP TON/NPI code), got {value}")
        settings = SmppSettings(
            name=name,
            host=t.req_str("host"),
            port=port,
            system_id=t.req_str("system_id"),
            password=t.secret("password", required=False),
            system_type=t.str_default("system_type", _default(SmppSettings, "system_type")),
            source_addr=t.str_default("source_addr", _default(SmppSettings, "source_addr")),
            **codes,
            tps=t.number("tps", _default(SmppSettings, "tps")),
            window=t.integer("window", _default(SmppSettings, "window")),
            receipts=t.boolean("receipts", _default(SmppSettings, "receipts")),
            throttle_delay=t.duration("throttle_delay", _default(SmppSettings, "throttle_delay")),
            send_timeout=t.duration("send_timeout", _default(SmppSettings, "send_timeout")),
            reconnect_initial=t.duration(
                "reconnect_initial", _default(SmppSettings, "reconnect_initial")
            ),
            reconnect_max=t.duration("reconnect_max", _default(SmppSettings, "reconnect_max")),
        )
    t.finish()
    return settings


def _store(t: Table) -> StoreSettings:
    """``[store]``: the backend, its file or DSN, and ``retain``."""
    backend = t.str_default(
        "backend", _default(StoreSettings, "backend"), choices=("sqlite", "postgresql")
    )
    if backend == "sqlite":
        path = t.str_default("path", str(_default(StoreSettings, "path")))
        if not path:
            raise t.error("path", "must not be empty")
        store = StoreSettings(backend="sqlite", path=Path(path))
    else:
        dsn = t.secret("dsn", required=True)
        assert dsn is not None
        if not dsn.reveal().startswith(("postgresql://", "postgres://")):
            # never shown: a DSN usually holds a password
            where = "dsn_env" if t.has("dsn_env") else "dsn"
            raise t.error(
                where,
                "expected a URL postgresql://user:password@host:port/database"
                " (the value is not shown)",
            )
        store = StoreSettings(backend="postgresql", dsn=dsn)
    store = dataclasses.replace(
        store, retain=t.duration("retain", _default(StoreSettings, "retain"))
    )
    t.finish()
    return store


def _default(cls: type[Any], name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``: each default is stated once, where the
    field is declared, and the loader reads it from there."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise LookupError(f"{cls.__name__}.{name} has no default")


def _role(t: Table) -> ApiRole:
    """An API key's role: ``role = "admin"`` or ``admin = true`` (the same thing said two ways;
    saying both, they must agree), else a sending key."""
    named = t.opt_str("role", choices=API_ROLES)
    flag = t.raw("admin")
    if flag is not None and not isinstance(flag, bool):
        raise t.error("admin", f"expected true or false, got {show(flag)}")
    if named is not None and flag is not None and (named == "admin") != flag:
        raise t.error("admin", f'contradicts role = "{named}" (give one of the two)')
    if named is not None:
        return "admin" if named == "admin" else "sending"
    return "admin" if flag else "sending"


def _sender_rates(table: Table | None) -> SenderRates:
    """``sender_tps = { default = 1, "12345" = 40 }``: positive rates by sender address (as
    the SubmitReq carries it: surrounding blanks dropped), ``default`` for any other sender."""
    if table is None:
        rates: SenderRates = _default(LinkSettings, "sender_tps")
        return rates
    default = table.opt_number("default")
    given: dict[str, float] = {}
    for address in list(table.data):
        if address == "default":
            continue
        sender = address.strip()
        if not sender:
            raise table.error(address or '""', "expected a sender address, got an empty key")
        if sender in given:
            raise table.error(address, f"the same sender as {show(sender)} above")
        rate = table.opt_number(address)
        assert rate is not None
        given[sender] = rate
    table.finish()
    return SenderRates(rates=tuple(given.items()), default=default)


def _region(t: Table, key: str) -> str | None:
    """A region for national numbers: an ISO 3166-1 alpha-2 code libphonenumber has metadata
    for ("US", "gb" read as "GB"), or None when absent."""
    value = t.opt_str(key)
    if value is None:
        return None
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise t.error(
            key,
            f"{show(value)} is not a region libphonenumber knows (a two-letter ISO 3166-1 "
            'code such as "US", "GB" or "DE")',
        )
    return region


def _number_check(value: str) -> NumberCheck:
    """``number_check`` as its type (the reader already refused anything else)."""
    return "possible" if value == "possible" else "valid"


def _listen(t: Table, key: str, default: str | None) -> Listen:
    """HOST:PORT ("127.0.0.1:8000", "[::1]:8000", "0.0.0.0:9000")."""
    text = t.opt_str(key)
    if text is None:
        if default is None:
            raise t.error(key, "missing (required)")
        text = default
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise t.error(key, f'expected "HOST:PORT", got {show(text)}')
    return Listen(host, int(port))


def _limits(t: Table) -> ListenerLimits:
    """A listener's timeouts and connection limit (``mm7.transport.listener``)."""
    return ListenerLimits(
        header_timeout=t.duration("header_timeout", _default(ListenerLimits, "header_timeout")),
        body_timeout=t.duration("body_timeout", _default(ListenerLimits, "body_timeout")),
        keepalive_timeout=t.duration(
            "keepalive_timeout", _default(ListenerLimits, "keepalive_timeout")
        ),
        max_connections=t.integer(
            "max_connections", _default(ListenerLimits, "max_connections"), minimum=1
        ),
    )


def _size(t: Table, key: str, default: int) -> int:
    """A byte count: an integer or "10 MB" / "300 KiB" (mm7.content.profile.parse_size)."""
    value = t.raw(key)
    if value is None:
        return default
    try:
        size = parse_size(value, key)
    except ProfileError:
        raise t.error(
            key, f'expected a byte count (like 1000000 or "10 MB"), got {show(value)}'
        ) from None
    if size < 1:
        raise t.error(key, f"expected a positive byte count, got {show(value)}")
    return size


def _check_url(t: Table, key: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error(key, f"expected an http:// or https:// URL with a host, got {show(url)}")
    if parts.username is not None or parts.password is not None:
        raise t.error(key, "credentials in the URL are refused (use the secret key)")


def _words(t: Table, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if not t.has(key):
        t.raw(key)
        return default
    words = t.str_list(key)
    for index, word in enumerate(words):
        if len(word.split()) != 1:
            raise t.ctx.error(f"{t.key_path(key)}[{index}]", f"expected one word, got {show(word)}")
    return tuple(w.upper() for w in words)
