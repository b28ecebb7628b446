"""WWW-Authenticate challenges, the Bearer token cache and credential keys (wave.registry.auth)."""

from __future__ import annotations

import base64

import pytest

from wave.registry.auth import Challenge, TokenCache, basic_header, credentials_id, parse_challenge

# --- parse_challenge ---------------------------------------------------------------------------------


def test_docker_hub_bearer_challenge():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/busybox:pull"')
    challenge = parse_challenge(header)
    assert challenge == Challenge("bearer", {"realm": "https://auth.docker.io/token",
                                             "service": "registry.docker.io",
                                             "scope": "repository:library/busybox:pull"})
    assert challenge.realm == "https://auth.docker.io/token"


def test_quoted_comma_inside_a_value_does_not_split_it():
    challenge = parse_challenge('Bearer realm="https://r/token",scope="repository:a/b:pull,push",service="reg"')
    assert challenge is not None
    assert challenge.params["scope"] == "repository:a/b:pull,push"
    assert challenge.params["service"] == "reg"


def test_escaped_quote_inside_a_value_is_unescaped():
    challenge = parse_challenge(r'Bearer realm="https://r/token",service="say \"hi\""')
    assert challenge is not None
    assert challenge.params["service"] == 'say "hi"'
    assert challenge.realm == "https://r/token"


def test_escaped_backslash_inside_a_value_is_unescaped():
    challenge = parse_challenge(r'Bearer realm="https://r/token",service="dom\\svc"')
    assert challenge is not None
    assert challenge.params["service"] == "dom\\svc"


def test_unquoted_values_and_spaces_around_separators():
    challenge = parse_challenge("Bearer realm=https://r/token , service = reg,scope=repository:x:pull")
    assert challenge is not None
    assert challenge.params == {"realm": "https://r/token", "service": "reg", "scope": "repository:x:pull"}


def test_scheme_and_parameter_names_are_case_insensitive():
    challenge = parse_challenge('BEARER Realm="https://r/token",SERVICE="reg"')
    assert challenge == Challenge("bearer", {"realm": "https://r/token", "service": "reg"})


def test_github_style_challenge_with_extra_parameters():
    challenge = parse_challenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",'
                                'scope="repository:user/image:pull",error="insufficient_scope"')
    assert challenge is not None
    assert challenge.params["error"] == "insufficient_scope"


def test_basic_challenge_with_realm():
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge("basic", {"realm": "Registry Realm"})


def test_basic_challenge_without_parameters():
    assert parse_challenge("Basic") == Challenge("basic", {})


def test_leading_and_trailing_whitespace_is_ignored():
    assert parse_challenge('  Basic realm="x"  ') == Challenge("basic", {"realm": "x"})


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_or_empty_header_gives_no_challenge(header):
    assert parse_challenge(header) is None


@pytest.mark.parametrize("header", ["garbage", ",,,", "Negotiate", "Bearer", "Bearer realm"])
def test_garbage_gives_no_usable_bearer_or_basic_challenge(header):
    challenge = parse_challenge(header)
    assert challenge is None or challenge.realm is None


def test_header_without_a_scheme_gives_none():
    assert parse_challenge('realm="https://r/token"') is None


def test_second_challenge_in_one_header_does_not_overwrite_the_bearer_realm():
    challenge = parse_challenge('Bearer realm="https://r/token",service="reg", Basic realm="Registry Realm"')
    assert challenge is not None
    assert challenge.realm == "https://r/token"


# --- basic_header / credentials_id -------------------------------------------------------------------


def test_basic_header_encodes_user_and_password():
    header = basic_header("alice", "p:ss word")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[len("Basic "):]).decode() == "alice:p:ss word"


def test_basic_header_encodes_non_ascii_as_utf8():
    assert base64.b64decode(basic_header("zoë", "ü").split()[1]) == "zoë:ü".encode()


def test_credentials_id_for_anonymous():
    assert credentials_id(None) == "anonymous"


@pytest.mark.parametrize("user, password", [("alice", "s3cr3t-Passw0rd"), ("bob", "hunter2"),
                                            ("robot$ci", "ghp_TOKEN123")])
def test_credentials_id_never_contains_the_password(user, password):
    key = credentials_id((user, password))
    assert password not in key
    assert len(key) == 16
    assert all(c in "0123456789abcdef" for c in key)


def test_credentials_id_is_stable_and_tells_credentials_apart():
    assert credentials_id(("alice", "one")) == credentials_id(("alice", "one"))
    assert credentials_id(("alice", "one")) != credentials_id(("alice", "two"))
    assert credentials_id(("alice", "one")) != credentials_id(("bob", "one"))
    assert credentials_id(("a:b", "c")) != credentials_id(("a", "b:c"))
    assert credentials_id(("", "")) != "anonymous"


# --- TokenCache --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> TokenCache:
    return TokenCache(clock=clock)


def test_token_is_returned_until_shortly_before_it_expires(cache, clock):
    cache.put("registry-1.docker.io", "library/busybox", "anonymous", "tok", expires_in=300)
    clock.now += 300 - TokenCache.MARGIN - 0.001
    assert cache.get("registry-1.docker.io", "library/busybox", "anonymous") == "tok"
    clock.now += 0.001
    assert cache.get("registry-1.docker.io", "library/busybox", "anonymous") is None


def test_token_is_gone_once_it_expired(cache, clock):
    cache.put("r", "a", "anonymous", "tok", expires_in=60)
    clock.now += 61
    assert cache.get("r", "a", "anonymous") is None


def test_short_lived_token_is_kept_at_least_a_second(cache, clock):
    cache.put("r", "a", "anonymous", "tok", expires_in=5)
    clock.now += 0.5
    assert cache.get("r", "a", "anonymous") == "tok"
    clock.now += 0.5
    assert cache.get("r", "a", "anonymous") is None


@pytest.mark.parametrize("other", [("other-registry", "a", "anonymous"), ("r", "b", "anonymous"),
                                   ("r", "a", "0123456789abcdef")])
def test_tokens_are_kept_apart_by_registry_repository_and_credentials(cache, other):
    cache.put("r", "a", "anonymous", "tok", expires_in=300)
    assert cache.get(*other) is None


def test_two_users_tokens_are_never_mixed_up(cache):
    alice, bob = credentials_id(("alice", "pw")), credentials_id(("bob", "pw"))
    cache.put("r", "a", alice, "alice-token", expires_in=300)
    cache.put("r", "a", bob, "bob-token", expires_in=300)
    assert cache.get("r", "a", alice) == "alice-token"
    assert cache.get("r", "a", bob) == "bob-token"


def test_put_replaces_the_token_and_its_expiry(cache, clock):
    cache.put("r", "a", "anonymous", "old", expires_in=20)
    cache.put("r", "a", "anonymous", "new", expires_in=300)
    clock.now += 100
    assert cache.get("r", "a", "anonymous") == "new"


def test_drop_forgets_only_that_token(cache):
    cache.put("r", "a", "anonymous", "tok-a", expires_in=300)
    cache.put("r", "b", "anonymous", "tok-b", expires_in=300)
    cache.drop("r", "a", "anonymous")
    assert cache.get("r", "a", "anonymous") is None
    assert cache.get("r", "b", "anonymous") == "tok-b"


def test_drop_of_unknown_token_is_harmless(cache):
    cache.drop("r", "nothing", "anonymous")
    assert cache.get("r", "nothing", "anonymous") is None


def test_default_clock_is_monotonic():
    cache = TokenCache()
    cache.put("r", "a", "anonymous", "tok", expires_in=300)
    assert cache.get("r", "a", "anonymous") == "tok"
