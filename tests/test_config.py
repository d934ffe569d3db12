"""The gateway configuration (mm7.service.config): real TOML files in, typed objects or an error.

Every error must name the file and the key path; secrets must never show in a repr, a str or
an error message; environment variables named by ``*_env`` keys supply secrets.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mm7.core.dialect import get_dialect
from mm7.service.config.loader import load_config
from mm7.service.config.settings import GatewayConfig
from mm7.service.errors import ConfigError
from mm7.transport.classify import Verdict
from mm7.transport.link import BasicAuth, BearerAuth, DigestAuth, LinkConfig, Secret

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "mm7" / "conf" / "gateway.toml"
DIALECTS = ROOT / "mm7" / "conf" / "dialects.toml"

BASE = """
{top}
[links.carrier-a]
url = "https://mmsc.example/mm7"
{link}

[inbound]
{inbound}

[inbound.peers.carrier-a]
{peer}

[[api.keys]]
name = "app"
key_env = "APP_KEY"
{api}

{extra}
"""

ENV = {"APP_KEY": "app-key-value-1"}


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_text(
    link: str = "",
    inbound: str = "",
    peer: str = 'allow = ["10.0.0.0/8"]',
    api: str = "",
    extra: str = "",
    top: str = "",
) -> str:
    return BASE.format(link=link, inbound=inbound, peer=peer, api=api, extra=extra, top=top)


def load(tmp_path: Path, env: dict[str, str] | None = None, /, **parts: str) -> GatewayConfig:
    return load_config(write(tmp_path, config_text(**parts)), env=ENV if env is None else env)


def error(tmp_path: Path, env: dict[str, str] | None = None, /, **parts: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, env, **parts)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'gateway.toml'}: "), message
    return message


def routed(config: GatewayConfig, recipient: str) -> str | None:
    link = config.route(recipient)
    return link.name if link is not None else None


# --------------------------------------------------------------------------- the shipped file


def test_shipped_config_loads_without_any_environment() -> None:
    config = load_config(SHIPPED, env={})
    links = config.link_configs()
    assert list(links) == ["simulator"]
    link = links["simulator"]
    assert isinstance(link, LinkConfig)
    assert link.url == "http://127.0.0.1:8080/mm7"
    assert link.auth is None and link.tls is None
    assert config.link("simulator").profile is not None
    inbound = config.inbound_config()
    assert inbound.path == "/mm7"
    assert [p.name for p in inbound.peers] == ["simulator"]
    assert config.peer_link("simulator") == "simulator"
    assert config.inbound.listen.is_loopback and config.api.listen.is_loopback
    assert (config.inbound.listen.port, config.api.listen.port) == (9000, 8000)
    assert config.store.backend == "sqlite"
    assert config.store.path == Path("var/mm7.sqlite")
    assert config.logging.level == "info"
    assert config.metrics.enabled and config.metrics.path == "/metrics"
    # the demo key is made up for this run, never written in the file
    (key,) = config.api.keys
    assert key.generated and key.env == "MM7_API_KEY"
    assert len(key.key.reveal()) >= 20
    assert config.api.check_key(key.key.reveal()) == key
    assert config.route("+15551230001") == config.link("simulator")


def test_shipped_config_takes_the_api_key_from_the_environment() -> None:
    config = load_config(SHIPPED, env={"MM7_API_KEY": "chosen-dev-key"})
    (key,) = config.api.keys
    assert not key.generated
    assert key.key == Secret("chosen-dev-key")
    assert config.api.check_key("chosen-dev-key") is key
    assert config.api.check_key("other") is None
    assert "chosen-dev-key" not in repr(config) + str(config)


# --------------------------------------------------------------------------- errors


def test_bad_tps_names_the_file_the_key_path_and_the_value(tmp_path: Path) -> None:
    message = error(tmp_path, link='tps = "fast"')
    assert message == (
        f'{tmp_path / "gateway.toml"}: links.carrier-a.tps: expected a positive number, got "fast"'
    )


@pytest.mark.parametrize(
    ("parts", "where", "problem"),
    [
        ({"link": "tps = 0"}, "links.carrier-a.tps", "positive number"),
        ({"link": "burst = 1.5"}, "links.carrier-a.burst", "integer >= 1"),
        ({"link": "max_in_flight = 0"}, "links.carrier-a.max_in_flight", "integer >= 1"),
        ({"link": 'wire_log = "true"'}, "links.carrier-a.wire_log", "true or false"),
        ({"link": 'request_timeout = "soon"'}, "links.carrier-a.request_timeout", "duration"),
        ({"link": 'dialect = "klingon"'}, "links.carrier-a.dialect", 'unknown dialect "klingon"'),
        (
            {"link": 'dialect = { number_plus = "sometimes" }'},
            "links.carrier-a.dialect",
            "number_plus",
        ),
        ({"link": 'profile = "no-such-profile"'}, "links.carrier-a.profile", "no profile named"),
        (
            {"link": 'classification = { transient = ["x1"] }'},
            "links.carrier-a.classification",
            "not a code",
        ),
        ({"link": 'prefixes = ["+1-555"]'}, "links.carrier-a.prefixes[0]", "digits"),
        (
            {"link": 'auth = { type = "ntlm", username = "u", password = "p" }'},
            "links.carrier-a.auth.type",
            "basic, digest, bearer",
        ),
        (
            {"link": 'auth = { type = "basic", username = "u" }'},
            "links.carrier-a.auth.password",
            "password_env",
        ),
        (
            {"link": 'tls = { ca_file = "/no/such/ca.pem" }'},
            "links.carrier-a.tls.ca_file",
            "no such file",
        ),
        ({"link": "breaker = { threshold = -1 }"}, "links.carrier-a.breaker.threshold", ">= 0"),
        ({"inbound": 'listen = "localhost"'}, "inbound.listen", "HOST:PORT"),
        ({"inbound": 'path = "mm7"'}, "inbound", "path must start with '/'"),
        ({"peer": 'allow = ["10.0.0.300/8"]'}, "inbound.peers.carrier-a.allow[0]", "CIDR"),
        ({"peer": 'versions = ["REL-9"]'}, "inbound.peers.carrier-a.versions[0]", "REL-9"),
        ({"peer": 'link = "carrier-b"'}, "inbound.peers.carrier-a.link", "no link named"),
        ({"extra": '[store]\nbackend = "mysql"'}, "store.backend", "sqlite, postgresql"),
        (
            {"extra": '[store]\nbackend = "postgresql"\ndsn = "host=db password=hidden"'},
            "store.dsn",
            "expected a URL postgresql://",
        ),
        ({"extra": '[logging]\nlevel = "loud"'}, "logging.level", "debug, info"),
        ({"extra": '[metrics]\npath = "metrics"'}, "metrics.path", "must start with '/'"),
        ({"extra": '[api.fetch]\nschemes = ["ftp"]'}, "api.fetch.schemes[0]", "http or https"),
        ({"extra": '[api.fetch]\nmax_bytes = "lots"'}, "api.fetch.max_bytes", "byte count"),
        (
            {"extra": '[relay.hooks.app]\nurl = "ftp://x"\nsecret = "s"'},
            "relay.hooks.app.url",
            "http://",
        ),
    ],
)
def test_each_bad_value_names_its_key_path(
    tmp_path: Path, parts: dict[str, str], where: str, problem: str
) -> None:
    message = error(tmp_path, **parts)
    assert f": {where}" in message, message
    assert problem in message, message


@pytest.mark.parametrize(
    ("parts", "where", "key"),
    [
        ({"top": 'colour = "blue"'}, "colour", "colour"),
        ({"link": "tsp = 5"}, "links.carrier-a.tsp", "did you mean 'tps'"),
        (
            {"link": 'auth = { type = "bearer", token = "t", username = "u" }'},
            "links.carrier-a.auth.username",
            "unknown key",
        ),
        ({"link": "breaker = { treshold = 3 }"}, "links.carrier-a.breaker.treshold", "threshold"),
        ({"peer": 'alow = ["10.0.0.0/8"]'}, "inbound.peers.carrier-a.alow", "did you mean 'allow'"),
        ({"inbound": 'pth = "/x"'}, "inbound.pth", "did you mean 'path'"),
        ({"api": "genrate_if_unset = true"}, "api.keys.app.genrate_if_unset", "generate_if_unset"),
        ({"extra": "[logging]\njsn = true"}, "logging.jsn", "did you mean 'json'"),
        ({"extra": "[store]\npth = 'x'"}, "store.pth", "unknown key"),
        (
            {"link": 'dialect = { number_pluss = "strip" }'},
            "links.carrier-a.dialect",
            "number_pluss",
        ),
    ],
)
def test_unknown_keys_are_refused_by_name(
    tmp_path: Path, parts: dict[str, str], where: str, key: str
) -> None:
    message = error(tmp_path, **parts)
    assert f": {where}" in message, message
    assert key in message, message


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[links\n")
    with pytest.raises(ConfigError, match=r"gateway\.toml: not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"nothing\.toml: cannot read"):
        load_config(tmp_path / "nothing.toml", env={})


def test_structure_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.toml: links: at least one link"):
        load_config(write(tmp_path, "[inbound]\n"), env={})
    text = config_text().replace("[inbound.peers.carrier-a]", "[inbound.peers.carrier-a.x]")
    with pytest.raises(ConfigError, match=r"inbound\.peers\.carrier-a\.x"):
        load_config(write(tmp_path, text), env=ENV)


# --------------------------------------------------------------------------- secrets


def test_missing_env_var_names_the_key_and_the_variable(tmp_path: Path) -> None:
    message = error(tmp_path, {})
    assert message.endswith("api.keys.app.key_env: environment variable APP_KEY is not set")
    message = error(tmp_path, {"APP_KEY": ""})
    assert "APP_KEY is empty" in message
    link = 'auth = { type = "basic", username = "vasp", password_env = "CARRIER_A_PASSWORD" }'
    message = error(tmp_path, link=link)
    assert message == (
        f"{tmp_path / 'gateway.toml'}: links.carrier-a.auth.password_env: "
        "environment variable CARRIER_A_PASSWORD is not set"
    )
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    link = f'tls = {{ cert_file = "{ca}", key_file = "{ca}", key_password_env = "KEY_PW" }}'
    message = error(tmp_path, link=link)
    assert message.count("gateway.toml") == 1, message
    assert message.endswith(
        "links.carrier-a.tls.key_password_env: environment variable KEY_PW is not set"
    )
    peer = 'basic = { username = "mmsc", password_env = "PEER_PW" }\nrealm = "x"'
    message = error(tmp_path, peer=peer)
    assert message.count("gateway.toml") == 1, message
    assert message.endswith(
        "inbound.peers.carrier-a.basic.password_env: environment variable PEER_PW is not set"
    )
    message = error(tmp_path, inbound='path = "/x"\noversize_http_status = "big"')
    assert message.endswith('inbound.oversize_http_status: expected an integer >= 1, got "big"')


def test_env_supplies_secrets_everywhere(tmp_path: Path) -> None:
    env = {
        **ENV,
        "A_PASS": "carrier-a-pass-123",
        "PEER_PASS": "peer-pass-456",
        "HOOK_SECRET": "hook-secret-789",
        "PG_DSN": "postgresql://u:pg-pass-000@db/mm7",
        "MEDIA_SECRET": "media-secret-321",
    }
    config = load(
        tmp_path,
        env,
        link='auth = { type = "digest", username = "vasp", password_env = "A_PASS" }',
        peer='basic = { username = "mmsc", password_env = "PEER_PASS" }',
        extra="""
[store]
backend = "postgresql"
dsn_env = "PG_DSN"

[relay]
media_url_secret_env = "MEDIA_SECRET"
[relay.hooks.app]
url = "https://app.example/hook"
secret_env = "HOOK_SECRET"
[relay.default_route]
hook = "app"
""",
    )
    auth = config.link_configs()["carrier-a"].auth
    assert isinstance(auth, DigestAuth)
    assert auth.username == "vasp" and auth.password.reveal() == "carrier-a-pass-123"
    basic = config.inbound_config().peers[0].auth.basic
    assert basic is not None and basic.password == "peer-pass-456"
    assert config.relay.hook("app").secret.reveal() == "hook-secret-789"
    assert config.store.backend == "postgresql"
    assert config.store.dsn == Secret(env["PG_DSN"])
    assert config.relay.media_url_secret == Secret("media-secret-321")
    shown = repr(config) + str(config) + repr(config.link_configs()) + repr(config.inbound)
    for name, value in env.items():
        assert value not in shown, name


def test_secret_and_its_env_together_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, api='key = "literal-key-value"')
    assert "api.keys.app.key: give key or key_env, not both" in message
    assert "literal-key-value" not in message


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    # a bearer token with a space: refused by BearerAuth, value not echoed
    env = {**ENV, "TOKEN": "tok en-secret-value"}
    message = error(tmp_path, env, link='auth = { type = "bearer", token_env = "TOKEN" }')
    assert "links.carrier-a.auth" in message and "spaces" in message
    assert "secret-value" not in message
    # a secret of the wrong type: the value is not shown either
    message = error(
        tmp_path, link='auth = { type = "basic", username = "u", password = 987654321 }'
    )
    assert "links.carrier-a.auth.password" in message
    assert "987654321" not in message
    # two API keys with the same value
    env = {**ENV, "OTHER": ENV["APP_KEY"]}
    message = error(tmp_path, env, extra='[[api.keys]]\nname = "other"\nkey_env = "OTHER"')
    assert "api.keys.other.key" in message and ENV["APP_KEY"] not in message
    # credentials in a URL
    message = error(
        tmp_path,
        extra='[relay.hooks.app]\nurl = "https://u:hunter2@app/x"\nsecret = "s-123"',
    )
    assert "relay.hooks.app.url" in message and "hunter2" not in message


def test_inline_secrets_are_masked(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        link='auth = { type = "bearer", token = "inline-token-abc" }',
        peer='basic = { username = "mmsc", password = "inline-peer-def" }',
    )
    auth = config.link_configs()["carrier-a"].auth
    assert isinstance(auth, BearerAuth) and auth.token.reveal() == "inline-token-abc"
    shown = repr(config) + str(config)
    assert "inline-token-abc" not in shown and "inline-peer-def" not in shown
    assert ENV["APP_KEY"] not in shown


def test_generated_key_only_on_loopback(tmp_path: Path) -> None:
    message = error(tmp_path, {}, api='generate_if_unset = true\n[api]\nlisten = "0.0.0.0:8000"')
    assert "api.keys.app.generate_if_unset" in message
    assert "loopback" in message and "APP_KEY" in message
    config = load(tmp_path, {}, api="generate_if_unset = true")
    assert config.api.keys[0].generated


# --------------------------------------------------------------------------- links


def test_link_builder_gives_the_expected_link_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder: only existence is checked at load\n")
    text = f"""
[[links]]
name = "carrier-a"
url = "https://mmsc.example/mm7"
dialect = "kt-like"
auth = {{ type = "basic", username = "vasp01", password_env = "A_PASS" }}
tls = {{ ca_file = "{ca}", server_hostname = "mmsc.example" }}
tps = 12.5
burst = 3
max_in_flight = 4
max_recipients = 20
classification = {{ transient = ["4101"], permanent = ["2101-2102"], http_transient = [409] }}
profile = "mms-300k"
request_timeout = "1m"
connect_timeout = 2
keepalive_timeout = "500ms"
breaker = {{ threshold = 0, cooldown = 0 }}
wire_log = true
user_agent = "acme-mm7"
prefixes = ["+1555", "4477"]
vasp_id = "vasp01"
vas_id = "svc"
service_code = "gold"
retry = {{ initial_backoff = "2s", max_backoff = "10m", max_age = "2d" }}

[[links]]
name = "carrier-b"
url = "http://mmsc-b.example/mm7"
dialect = {{ extends = "mbuni-compatible", boolean_spelling = "digit" }}
auth = {{ type = "bearer", token_env = "B_TOKEN" }}
prefixes = ["+1"]
default = true

[inbound.peers.carrier-a]
allow = ["10.0.0.0/8"]

[[api.keys]]
name = "app"
key_env = "APP_KEY"
"""
    path = write(tmp_path, text)
    (tmp_path / "dialects.toml").write_text(DIALECTS.read_text(encoding="utf-8"))
    env = {**ENV, "A_PASS": "a-secret", "B_TOKEN": "b-token"}
    config = load_config(path, env=env)
    links = config.link_configs()
    assert list(links) == ["carrier-a", "carrier-b"]
    a = links["carrier-a"]
    assert a.dialect.name == "kt-like" and a.dialect.boolean_spelling == "upper"
    assert a.auth == BasicAuth("vasp01", Secret("a-secret"))
    assert a.tls is not None and a.tls.ca_file == ca and a.tls.server_hostname == "mmsc.example"
    assert (a.tps, a.burst, a.max_in_flight, a.max_recipients) == (12.5, 3, 4, 20)
    assert a.classification.status[4101] is Verdict.TRANSIENT
    assert a.classification.status[2102] is Verdict.PERMANENT
    assert a.classification.http[409] is Verdict.TRANSIENT
    assert (a.request_timeout, a.connect_timeout, a.keepalive_timeout) == (60.0, 2.0, 0.5)
    assert (a.breaker_threshold, a.breaker_cooldown) == (0, 0.0)
    assert a.wire_log and a.user_agent == "acme-mm7"
    settings = config.link("carrier-a")
    assert settings.profile is not None and settings.profile.name == "mms-300k"
    assert (settings.vasp_id, settings.vas_id, settings.service_code) == ("vasp01", "svc", "gold")
    assert (settings.retry.initial_backoff, settings.retry.max_age) == (2.0, 172800.0)
    b = links["carrier-b"]
    assert b.auth == BearerAuth(Secret("b-token"))
    assert b.dialect.number_plus == get_dialect("mbuni").number_plus
    assert b.dialect.boolean_spelling == "digit"
    # routing: longest prefix wins; '+', spaces and dashes do not matter; else the default
    assert routed(config, "+1 555-0100") == "carrier-a"
    assert routed(config, "15550100") == "carrier-a"
    assert routed(config, "+447700900123") == "carrier-a"
    assert routed(config, "+12125550100") == "carrier-b"
    assert routed(config, "+33612345678") == "carrier-b"
    assert routed(config, "user@example.com") == "carrier-b"
    assert "a-secret" not in repr(config) and "b-token" not in repr(config)


def test_routing_without_a_default_and_conflicting_rules(tmp_path: Path) -> None:
    second = '[links.carrier-b]\nurl = "http://b.example/mm7"\nprefixes = ["1212"]'
    config = load(tmp_path, link='prefixes = ["+1555"]', extra=second)
    assert config.default_link is None
    assert config.route("+33612345678") is None
    assert config.route("+12125550100") == config.link("carrier-b")
    message = error(tmp_path, link='prefixes = ["1212"]', extra=second)
    assert "links.carrier-b.prefixes" in message and "carrier-a" in message
    both = second + "\ndefault = true"
    message = error(tmp_path, link="default = true", extra=both)
    assert "links.carrier-b.default: only one default link" in message


def test_link_config_refusals_are_reported_with_the_path(tmp_path: Path) -> None:
    text = config_text().replace("https://mmsc.example/mm7", "http://u:pw-xyz@mmsc.example/mm7")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=ENV)
    assert ": links.carrier-a: credentials in the url are refused" in str(info.value)
    assert "pw-xyz" not in str(info.value)
    text = config_text(link='tls = { server_hostname = "x" }').replace("https://", "http://")
    with pytest.raises(ConfigError, match=r"links\.carrier-a: tls settings need an https"):
        load_config(write(tmp_path, text), env=ENV)


def test_dialects_file_errors_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "dialects.toml").write_text(
        '[dialects.a]\nextends = "b"\n[dialects.b]\nextends = "a"\n'
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'dialects.toml'}: dialects.")
    assert "extends itself" in str(info.value)
    (tmp_path / "dialects.toml").write_text('[dialects.x]\nboolean_spelling = "shouty"\n')
    with pytest.raises(ConfigError, match=r"dialects\.toml: dialects\.x: boolean_spelling"):
        load(tmp_path)
    (tmp_path / "dialects.toml").write_text('[dialects.nokia]\nextends = "3gpp"\n')
    with pytest.raises(ConfigError, match=r"dialects\.nokia: is the name of a built-in"):
        load(tmp_path)
    (tmp_path / "dialects.toml").unlink()
    message = error(tmp_path, top='dialects_file = "missing.toml"')
    assert "dialects_file: no such file" in message


# --------------------------------------------------------------------------- inbound


def _ca_pem(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_inbound_builder_gives_the_expected_peers(tmp_path: Path) -> None:
    ca = tmp_path / "clients-ca.pem"
    _ca_pem(ca)
    server_cert = tmp_path / "server.pem"
    server_key = tmp_path / "server.key"
    server_cert.write_text("x")
    server_key.write_text("x")
    text = f"""
[links.carrier-a]
url = "https://mmsc-a.example/mm7"
[links.carrier-b]
url = "https://mmsc-b.example/mm7"

[inbound]
listen = "[::1]:9443"
path = "/mm7/in"
max_body_bytes = "2 MB"
oversize_http_status = 400
dialect = "mbuni"
tls = {{ cert_file = "{server_cert}", key_file = "{server_key}", client_ca = "{ca}" }}

[[inbound.peers]]
name = "mmsc-a"
link = "carrier-a"
basic = {{ username = "mmsc", password_env = "PEER_PASS" }}
allow = ["192.0.2.0/24", "2001:db8::/32"]
versions = ["REL-5-MM7-1-0", "REL-6-MM7-1-4"]
dialect = "nokia"
strict = true
errors_as_fault = false
wire_log = true
realm = "carrier"

[[inbound.peers]]
name = "carrier-b"
client_cert = {{ subjects = ["CN=mmsc-b,O=B"], issuers = ["{ca}"], sans = ["dns:MMSC-B.b.ex"] }}

[[api.keys]]
name = "app"
key_env = "APP_KEY"
"""
    config = load_config(write(tmp_path, text), env={**ENV, "PEER_PASS": "peer-pw"})
    inbound = config.inbound_config()
    assert inbound.path == "/mm7/in"
    assert inbound.limits.max_total_bytes == 2_000_000
    assert inbound.oversize_http_status == 400
    assert inbound.dialect == get_dialect("mbuni")
    a, b = inbound.peers
    assert a.name == "mmsc-a" and config.peer_link("mmsc-a") == "carrier-a"
    assert a.auth.basic is not None and a.auth.basic.username == "mmsc"
    assert a.auth.basic.password == "peer-pw"
    assert a.auth.networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert a.auth.realm == "carrier"
    assert a.versions == frozenset({"REL-5-MM7-1-0", "REL-6-MM7-1-4"})
    assert a.dialect == get_dialect("nokia")
    assert a.strict and not a.errors_as_fault and a.wire_log
    assert b.name == "carrier-b" and config.peer_link("carrier-b") == "carrier-b"
    assert b.auth.client_cert is not None
    assert b.auth.client_cert.subjects == frozenset({"CN=mmsc-b,O=B"})
    assert len(b.auth.client_cert.issuers) == 1
    assert b.auth.client_cert.sans == frozenset({"DNS:mmsc-b.b.ex"})
    assert config.inbound.listen.host == "::1" and config.inbound.listen.port == 9443
    assert config.inbound.tls is not None and config.inbound.tls.client_ca == ca
    assert config.inbound.tls.require_client_cert
    assert "peer-pw" not in repr(config)


def test_client_cert_bad_san_is_named(tmp_path: Path) -> None:
    message = error(tmp_path, peer="client_cert = { sans = ['DNS:a.example', 'IP:10.0.0.1'] }")
    assert "inbound.peers.carrier-a.client_cert.sans[1]: expected DNS:name or URI:uri" in message


def test_client_cert_needs_inbound_tls(tmp_path: Path) -> None:
    message = error(tmp_path, peer="client_cert = { subjects = ['mmsc'] }")
    assert "inbound.peers.carrier-a.client_cert: needs [inbound.tls]" in message


# --------------------------------------------------------------------------- relay and the rest


RELAY = """
[relay]
stop_words = ["stop", "Arret"]
start_words = ["start"]
max_age = "1d"
media_url_base = "https://gw.example/media"

[relay.hooks.app]
url = "https://app.example/mo"
secret_env = "HOOK_SECRET"
concurrency = 2
ordered = true
timeout = "5s"

[relay.hooks.status]
url = "https://app.example/status"
secret_env = "HOOK_SECRET"

[[relay.routes]]
name = "promo"
keywords = ["promo", "Deal"]
short_codes = ["12345"]
hook = "app"
status_hook = "status"
media = "inline"

[[relay.routes]]
name = "carrier-a-mo"
links = ["carrier-a"]
recipient_prefixes = ["+1555"]
service_codes = ["gold"]
applic_ids = ["com.example.app"]
hook = "app"

[relay.default_route]
hook = "app"
"""


def test_relay_hooks_and_routes_are_kept_as_validated_data(tmp_path: Path) -> None:
    config = load(tmp_path, {**ENV, "HOOK_SECRET": "hook-s3cret"}, extra=RELAY)
    relay = config.relay
    assert [h.name for h in relay.hooks] == ["app", "status"]
    app = relay.hook("app")
    assert app.url == "https://app.example/mo" and app.secret.reveal() == "hook-s3cret"
    assert (app.concurrency, app.ordered, app.timeout) == (2, True, 5.0)
    promo, by_link = relay.routes
    assert promo.match.keywords == ("PROMO", "DEAL") and promo.match.short_codes == ("12345",)
    assert promo.media == "inline" and promo.status_hook == "status"
    assert by_link.match.links == ("carrier-a",) and by_link.media == "url"
    assert by_link.match.applic_ids == ("com.example.app",)
    assert relay.default_route is not None and relay.default_route.hook == "app"
    assert relay.stop_words == ("STOP", "ARRET") and relay.start_words == ("START",)
    assert relay.max_age == 86400.0
    assert "hook-s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('hook = "app"\nstatus_hook', 'hook = "nope"\nstatus_hook'), "relay.routes.promo.hook"),
        (('links = ["carrier-a"]', 'links = ["carrier-z"]'), "relay.routes.carrier-a-mo.links[0]"),
        (('media = "inline"', 'media = "base64"'), "relay.routes.promo.media"),
        (('start_words = ["start"]', 'start_words = ["STOP"]'), "relay.start_words"),
        (('stop_words = ["stop", "Arret"]', 'stop_words = ["stop now"]'), "relay.stop_words[0]"),
        (('keywords = ["promo", "Deal"]', 'kewords = ["promo"]'), "relay.routes.promo.kewords"),
    ],
)
def test_bad_relay_settings_are_refused(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    old, new = change
    assert old in RELAY
    message = error(tmp_path, {**ENV, "HOOK_SECRET": "s"}, extra=RELAY.replace(old, new, 1))
    assert f": {where}" in message, message


def test_a_route_without_criteria_is_refused(tmp_path: Path) -> None:
    extra = '[relay.hooks.app]\nurl = "http://a/x"\nsecret = "s"\n'
    extra += '[[relay.routes]]\nname = "all"\nhook = "app"'
    message = error(tmp_path, extra=extra)
    assert "relay.routes.all: a route needs at least one of" in message


def test_durations_sizes_and_listeners(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        link='request_timeout = "250ms"\nconnect_timeout = 1.5\nkeepalive_timeout = "2m"',
        inbound='listen = "0.0.0.0:0"',
        extra='[metrics]\nlisten = "[::1]:9100"\nenabled = false\n[api.fetch]\nmax_bytes = 1000',
    )
    link = config.link_configs()["carrier-a"]
    assert (link.request_timeout, link.connect_timeout, link.keepalive_timeout) == (0.25, 1.5, 120)
    assert str(config.inbound.listen) == "0.0.0.0:0" and not config.inbound.listen.is_loopback
    assert config.metrics.listen is not None and str(config.metrics.listen) == "[::1]:9100"
    assert config.metrics.listen.is_loopback and not config.metrics.enabled
    assert config.api.fetch.max_bytes == 1000
    assert config.api.max_request_bytes == 10_000_000
    message = error(tmp_path, inbound='listen = "127.0.0.1:70000"')
    assert 'inbound.listen: expected "HOST:PORT", got "127.0.0.1:70000"' in message
    message = error(tmp_path, link='request_timeout = "0s"')
    assert "links.carrier-a.request_timeout: expected a positive duration" in message
