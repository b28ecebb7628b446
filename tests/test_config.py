"""Settings: defaults < TOML file < WAVE_* variables < overrides, parsing, and errors (wave.config)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from wave.config import (
    ConfigError,
    Settings,
    load_settings,
    parse_bool,
    parse_credentials,
    parse_duration,
    parse_list,
    parse_mapping,
    parse_networks,
    parse_size,
)

PASSWORD = "Sup3r-S3cret-pw"
SHA = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"  # sha256("password")


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wave.toml"
    path.write_text(text)
    return path


# --- defaults ----------------------------------------------------------------------------------------


def test_defaults_work_on_a_laptop():
    settings = load_settings(environ={})
    assert (settings.host, settings.port) == ("127.0.0.1", 9090)
    assert settings.public_url == "http://localhost:9090"
    assert settings.public_authority == "localhost:9090"
    assert settings.token_ttl == 12 * 3600
    assert settings.build_launcher == "local"
    assert settings.registry_credentials == {}
    assert settings.insecure_registries == ()
    assert settings.max_inline_layer_size == 16 << 20
    assert settings.redis_url == ""


def test_default_state_dir_is_expanded_under_home():
    settings = load_settings(environ={})
    assert settings.state_dir == Path("~/.local/state/wave").expanduser()
    assert "~" not in str(settings.state_dir)
    assert settings.storage_location == str(settings.state_dir / "storage")
    assert settings.build_dir == settings.state_dir / "builds"


def test_settings_are_frozen():
    settings = load_settings(environ={})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_environ_argument_is_used_instead_of_the_process_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("WAVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WAVE_PORT", "1234")
    assert load_settings(environ={}).port == 9090
    assert load_settings().port == 1234


# --- file and environment ----------------------------------------------------------------------------


def test_toml_file_sets_typed_values(tmp_path):
    path = write_toml(tmp_path, """
port = 8080
token_ttl = "2h"
upstream_read_timeout = 30
insecure_registries = ["registry.lan:5000", "10.0.0.5:5000"]
max_inline_layer_size = "4m"
layer_allowed_hosts = ["10.0.0.0/8", "files.lan"]
k8s_node_selectors = { "linux/amd64" = "arch=amd64" }
state_dir = "/var/lib/wave"
""")
    settings = load_settings(path, environ={})
    assert settings.port == 8080
    assert settings.token_ttl == 7200
    assert settings.upstream_read_timeout == 30
    assert settings.insecure_registries == ("registry.lan:5000", "10.0.0.5:5000")
    assert settings.max_inline_layer_size == 4 << 20
    assert settings.layer_allowed_hosts == ("10.0.0.0/8", "files.lan")
    assert settings.k8s_node_selectors == {"linux/amd64": "arch=amd64"}
    assert settings.state_dir == Path("/var/lib/wave")


def test_wave_config_variable_names_the_file(tmp_path):
    path = write_toml(tmp_path, "port = 7070\n")
    assert load_settings(environ={"WAVE_CONFIG": str(path)}).port == 7070


def test_config_file_argument_wins_over_wave_config(tmp_path):
    path = write_toml(tmp_path, "port = 7070\n")
    other = tmp_path / "other.toml"
    other.write_text("port = 6060\n")
    assert load_settings(path, environ={"WAVE_CONFIG": str(other)}).port == 7070


def test_environment_overrides_the_file(tmp_path):
    path = write_toml(tmp_path, 'port = 7070\nlog_level = "DEBUG"\n')
    settings = load_settings(path, environ={"WAVE_PORT": "6060"})
    assert settings.port == 6060
    assert settings.log_level == "DEBUG"


def test_explicit_overrides_win_over_environment(tmp_path):
    settings = load_settings(environ={"WAVE_PORT": "6060"}, port=5050)
    assert settings.port == 5050


def test_unknown_keys_in_the_file_are_rejected_by_name(tmp_path):
    path = write_toml(tmp_path, 'port = 1\nWAVE_PORT = 2\n[server]\nhost = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting") as caught:
        load_settings(path, environ={})
    assert "WAVE_PORT, server" in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_invalid_toml_is_a_config_error_without_the_offending_text(tmp_path):
    path = write_toml(tmp_path, f"redis_url = redis://:{PASSWORD}@redis:6379\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_settings(path, environ={})
    assert PASSWORD not in str(caught.value)


# --- value parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("2d", 172800),
                                           ("1.5h", 5400), (" 10 m ", 600), (45, 45), (0.5, 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", 0, "-5", "5x", "h", "", True, "1h30m"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [("1048576", 1 << 20), ("512k", 512 << 10), ("10m", 10 << 20), ("1g", 1 << 30),
                                        ("10MiB", 10 << 20), ("10MB", 10 << 20), ("64 KB", 64 << 10), (4096, 4096)])
def test_sizes_are_binary_multiples(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1.5m", "10t", "-1", "big", True])
def test_bad_sizes_are_rejected(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False),
                                         ("false", False), ("no", False), ("off", False), ("", False), (True, True)])
def test_booleans(text, value):
    assert parse_bool(text) is value


def test_bad_boolean_is_rejected():
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("maybe")


def test_lists_from_commas_or_arrays_drop_blanks():
    assert parse_list(" a, b,,c ,") == ("a", "b", "c")
    assert parse_list(["a", " b ", ""]) == ("a", "b")
    assert parse_list("") == ()


def test_mappings_from_pairs_or_tables():
    assert parse_mapping("linux/amd64=arch=amd64, linux/arm64 = arch=arm64") == {
        "linux/amd64": "arch=amd64", "linux/arm64": "arch=arm64"}
    assert parse_mapping({"a": 1}) == {"a": "1"}


def test_mapping_item_without_equals_is_rejected():
    with pytest.raises(ValueError, match="key=value"):
        parse_mapping("a=1,b")


def test_networks_accept_hosts_and_cidrs():
    assert parse_networks("10.0.0.0/8, files.lan, fd00::/8") == ("10.0.0.0/8", "files.lan", "fd00::/8")


def test_bad_cidr_fails_at_start_up_naming_the_setting():
    with pytest.raises(ConfigError, match="WAVE_LAYER_ALLOWED_HOSTS") as caught:
        load_settings(environ={"WAVE_LAYER_ALLOWED_HOSTS": "files.lan,10.0.0.0/33"})
    assert "10.0.0.0/33" in str(caught.value)


# --- credentials -------------------------------------------------------------------------------------


def test_credentials_from_the_variable():
    settings = load_settings(environ={"WAVE_REGISTRY_CREDENTIALS": f"ghcr.io=alice:{PASSWORD},quay.io=bob:p:w=x"})
    assert settings.registry_credentials == {"ghcr.io": ("alice", PASSWORD), "quay.io": ("bob", "p:w=x")}


def test_credentials_from_a_toml_table(tmp_path):
    path = write_toml(tmp_path, f"""
[registry_credentials]
"ghcr.io" = {{ username = "alice", password = "{PASSWORD}" }}
"127.0.0.1:5000" = "bob:pw"
""")
    settings = load_settings(path, environ={})
    assert settings.registry_credentials == {"ghcr.io": ("alice", PASSWORD), "127.0.0.1:5000": ("bob", "pw")}


@pytest.mark.parametrize("value", ["ghcr.io=alice", "ghcr.io=:pw", "ghcr.io"])
def test_credentials_without_user_or_password_separator_are_rejected(value):
    with pytest.raises(ValueError, match=r"user:password|key=value"):
        parse_credentials(value)


def test_credentials_in_the_file_without_password_are_rejected(tmp_path):
    path = write_toml(tmp_path, '[registry_credentials]\n"ghcr.io" = "alice"\n')
    with pytest.raises(ConfigError, match="registry_credentials"):
        load_settings(path, environ={})


# --- errors name the setting and hide secrets --------------------------------------------------------


@pytest.mark.parametrize("env, name", [
    ({"WAVE_PORT": "abc"}, "WAVE_PORT"),
    ({"WAVE_PORT": "70000"}, "WAVE_PORT"),
    ({"WAVE_TOKEN_TTL": "0"}, "WAVE_TOKEN_TTL"),
    ({"WAVE_BUILD_TIMEOUT": "ten minutes"}, "WAVE_BUILD_TIMEOUT"),
    ({"WAVE_MAX_INLINE_LAYER_SIZE": "lots"}, "WAVE_MAX_INLINE_LAYER_SIZE"),
    ({"WAVE_UPSTREAM_RETRIES": "x"}, "WAVE_UPSTREAM_RETRIES"),
    ({"WAVE_K8S_NODE_SELECTORS": "novalue"}, "WAVE_K8S_NODE_SELECTORS"),
    ({"WAVE_BUILD_LAUNCHER": "nomad"}, "WAVE_BUILD_LAUNCHER"),
    ({"WAVE_LOCAL_BUILDER": "kaniko"}, "WAVE_LOCAL_BUILDER"),
    ({"WAVE_SERVER_URL": "wave.example.com"}, "WAVE_SERVER_URL"),
    ({"WAVE_SERVER_URL": "ftp://wave.example.com"}, "WAVE_SERVER_URL"),
    ({"WAVE_STORAGE_URL": "s3://"}, "WAVE_STORAGE_URL"),
])
def test_errors_name_the_setting(env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ=env)


def test_error_from_the_file_names_the_key_and_the_file(tmp_path):
    path = write_toml(tmp_path, 'token_ttl = "soon"\n')
    with pytest.raises(ConfigError, match="token_ttl") as caught:
        load_settings(path, environ={})
    assert str(path) in str(caught.value)
    assert "'soon'" in str(caught.value)


def test_error_for_a_non_secret_shows_the_value():
    with pytest.raises(ConfigError, match="'abc'"):
        load_settings(environ={"WAVE_PORT": "abc"})


@pytest.mark.parametrize("env, name", [
    ({"WAVE_REGISTRY_CREDENTIALS": f"ghcr.io={PASSWORD}"}, "WAVE_REGISTRY_CREDENTIALS"),
    ({"WAVE_REGISTRY_CREDENTIALS": f"alice:{PASSWORD}"}, "WAVE_REGISTRY_CREDENTIALS"),
    ({"WAVE_METRICS_ACCOUNTS": f"admin:{PASSWORD}"}, "WAVE_METRICS_ACCOUNTS"),
    ({"WAVE_METRICS_ACCOUNTS": f"{PASSWORD}"}, "WAVE_METRICS_ACCOUNTS"),
    ({"WAVE_REDIS_URL": f"http://:{PASSWORD}@redis:6379/0"}, "WAVE_REDIS_URL"),
    ({"WAVE_REDIS_URL": f"{PASSWORD}@redis:6379"}, "WAVE_REDIS_URL"),
])
def test_errors_about_secrets_name_the_setting_but_never_show_the_value(env, name):
    with pytest.raises(ConfigError, match=name) as caught:
        load_settings(environ=env)
    assert PASSWORD not in str(caught.value)


def test_error_about_a_secret_in_the_file_hides_the_value(tmp_path):
    path = write_toml(tmp_path, f'metrics_accounts = "admin:{PASSWORD}"\n')
    with pytest.raises(ConfigError, match="metrics_accounts") as caught:
        load_settings(path, environ={})
    assert PASSWORD not in str(caught.value)


def test_metrics_accounts_are_password_hashes():
    settings = load_settings(environ={"WAVE_METRICS_ACCOUNTS": f"admin:{SHA.upper()},ops:{SHA}"})
    assert settings.metrics_accounts == {"admin": SHA, "ops": SHA}


def test_metrics_accounts_from_a_toml_table(tmp_path):
    path = write_toml(tmp_path, f'[metrics_accounts]\nadmin = "{SHA}"\n')
    assert load_settings(path, environ={}).metrics_accounts == {"admin": SHA}


@pytest.mark.parametrize("url", ["redis://redis:6379/0", f"rediss://:{PASSWORD}@redis:6380", "unix:///run/redis.sock"])
def test_redis_urls_accepted(url):
    assert load_settings(environ={"WAVE_REDIS_URL": url}).redis_url == url


def test_negative_size_in_the_file_is_rejected(tmp_path):
    path = write_toml(tmp_path, "max_inline_layer_size = -1\n")
    with pytest.raises(ConfigError, match="max_inline_layer_size"):
        load_settings(path, environ={})


# --- public URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, authority", [
    ("https://wave.example.com", "wave.example.com"),
    ("https://wave.example.com/", "wave.example.com"),
    ("http://localhost:9090/", "localhost:9090"),
    ("https://wave.example.com:8443/", "wave.example.com:8443"),
    ("http://[::1]:9090", "[::1]:9090"),
])
def test_public_authority_comes_from_wave_server_url(url, authority):
    settings = load_settings(environ={"WAVE_SERVER_URL": url})
    assert settings.public_authority == authority
    assert not settings.public_url.endswith("/")


def test_public_authority_defaults_to_localhost_and_the_port():
    assert load_settings(environ={"WAVE_PORT": "8000"}).public_authority == "localhost:8000"


def test_storage_location_and_build_dir_follow_their_settings(tmp_path):
    settings = load_settings(environ={"WAVE_STORAGE_URL": "s3://bucket/prefix", "WAVE_BUILD_WORKSPACE": "/mnt/b",
                                      "WAVE_STATE_DIR": str(tmp_path)})
    assert settings.storage_location == "s3://bucket/prefix"
    assert settings.build_dir == Path("/mnt/b")
    assert settings.state_dir == tmp_path


# --- redacted ----------------------------------------------------------------------------------------


def test_redacted_hides_every_secret_and_shows_the_rest():
    settings = load_settings(environ={
        "WAVE_REGISTRY_CREDENTIALS": f"ghcr.io=alice:{PASSWORD}",
        "WAVE_METRICS_ACCOUNTS": f"admin:{SHA}",
        "WAVE_REDIS_URL": f"redis://:{PASSWORD}@redis:6379",
        "WAVE_PORT": "8000",
    })
    shown = settings.redacted()
    assert shown["registry_credentials"] == "<set>"
    assert shown["metrics_accounts"] == "<set>"
    assert shown["redis_url"] == "<set>"
    assert shown["port"] == 8000
    assert PASSWORD not in repr(shown)
    assert SHA not in repr(shown)
    assert "alice" not in repr(shown)


def test_redacted_says_unset_for_empty_secrets():
    shown = load_settings(environ={}).redacted()
    assert (shown["registry_credentials"], shown["metrics_accounts"], shown["redis_url"]) == ("<unset>",) * 3


def test_redacted_lists_every_setting():
    assert set(load_settings(environ={}).redacted()) == {f.name for f in fields(Settings)}
