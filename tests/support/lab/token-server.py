#!/usr/bin/env python3
"""token-server.py - minimal Docker registry v2 *token* (Bearer) auth server.

Lets a local CNCF distribution registry (start-registry.sh with REG_TOKEN_*)
answer `401 WWW-Authenticate: Bearer realm=...,service=...,scope=...` exactly
like Docker Hub / quay.io do, so clients and proxies can be tested against the
real Bearer challenge flow without internet.

Copied from the wave lab (shared/lab/token-server.py) so the tests do not depend
on anything outside the repository at run time; tests/support/registry.py starts
it on a free port for the `bearer_registry` fixture. Changes: lint/typing only.

Stdlib + the `openssl` command only (Debian package openssl).

  python3 token-server.py --port 5010 --dir /tmp/wave-lab/token \
      --user wave --password secret
  -> creates DIR/key.pem + DIR/cert.pem (the registry's rootcertbundle) on first run

Policy (enough for tests):
  * anonymous          -> "pull" on any repository except private/*
  * --user/--password  -> every requested action (pull, push, ...) everywhere
  * wrong credentials  -> 401
Endpoints: GET /token?service=..&scope=..[&scope=..] (Basic auth optional)
           POST /token (OAuth2 form: grant_type=password|refresh_token, used by containerd)
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ensure_keys(d: str) -> tuple[str, str]:
    """Create an RSA key and a self-signed cert once (idempotent)."""
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    if not (os.path.exists(key) and os.path.exists(cert)):
        os.makedirs(d, exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "3650",
                "-subj",
                "/CN=wave-lab-token-issuer",
            ],
            check=True,
            capture_output=True,
        )
    return key, cert


def libtrust_kid(key_pem: str) -> str:
    """Key ID the registry expects in the JWT 'kid' header (docker/libtrust format):
    base32(sha256(DER SubjectPublicKeyInfo)[:30]) in 12 groups of 4, ':'-joined."""
    der = subprocess.run(
        ["openssl", "pkey", "-in", key_pem, "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


class TokenIssuer:
    def __init__(self, key: str, issuer: str, ttl: int = 300) -> None:
        self.key, self.issuer, self.ttl = key, issuer, ttl
        self.kid = libtrust_kid(key)

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + b64url(sig)

    def issue(self, service: str, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": service,
            "exp": now + self.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": b64url(os.urandom(12)),
            "access": access,
        }
        return self.sign(claims)


def parse_scopes(scopes: list[str]) -> list[dict[str, Any]]:
    """'repository:lab/x:pull,push' -> {'type','name','actions'}; name may hold ':' (port)."""
    out = []
    for s in scopes:
        for one in s.split(" "):
            parts = one.split(":")
            if len(parts) < 3:
                continue
            out.append(
                {
                    "type": parts[0],
                    "name": ":".join(parts[1:-1]),
                    "actions": [a for a in parts[-1].split(",") if a],
                }
            )
    return out


def make_handler(cfg: argparse.Namespace, issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            if cfg.verbose:
                sys.stderr.write("token-server: " + fmt % args + "\n")

        def reply(self, code: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def check_user(self, user: str | None, password: str | None) -> bool | None:
            """None = anonymous, True = known user, False = bad credentials."""
            if user is None:
                return None
            return user == cfg.user and password == cfg.password

        def grant(self, service: str, scopes: list[str], authed: bool, user: str | None) -> None:
            access: list[dict[str, Any]] = []
            for sc in parse_scopes(scopes):
                if authed:
                    acts = sc["actions"]
                elif sc["type"] == "repository" and not sc["name"].startswith("private/"):
                    acts = [a for a in sc["actions"] if a == "pull"]
                else:
                    acts = []
                access.append({**sc, "actions": acts})
            tok = issuer.issue(service, (user or "") if authed else "", access)
            body: dict[str, Any] = {
                "token": tok,
                "access_token": tok,
                "expires_in": issuer.ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if authed:
                body["refresh_token"] = "refresh-" + (user or "")
            self.reply(200, body)

        def do_GET(self) -> None:
            u = urllib.parse.urlparse(self.path)
            if u.path != "/token":
                return self.reply(404, {"error": "not found"})
            q = urllib.parse.parse_qs(u.query)
            user: str | None = None
            password: str | None = None
            h = self.headers.get("Authorization", "")
            if h.lower().startswith("basic "):
                user, _, password = base64.b64decode(h[6:]).decode().partition(":")
            ok = self.check_user(user, password)
            if ok is False:
                return self.reply(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                    {"WWW-Authenticate": 'Basic realm="wave-lab-token"'},
                )
            self.grant(q.get("service", [""])[0], q.get("scope", []), bool(ok), user)

        def do_POST(self) -> None:
            if urllib.parse.urlparse(self.path).path != "/token":
                return self.reply(404, {"error": "not found"})
            n = int(self.headers.get("Content-Length") or 0)
            f = urllib.parse.parse_qs(self.rfile.read(n).decode())
            g = f.get("grant_type", [""])[0]
            if g == "password":
                user, password = f.get("username", [""])[0], f.get("password", [""])[0]
            elif g == "refresh_token":
                rt = f.get("refresh_token", [""])[0]
                user, password = rt.removeprefix("refresh-"), cfg.password
            else:
                return self.reply(400, {"error": "unsupported_grant_type"})
            if not self.check_user(user, password):
                return self.reply(401, {"error": "invalid_grant"})
            self.grant(f.get("service", [""])[0], f.get("scope", []), True, user)

    return H


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5010)
    p.add_argument("--dir", default="/tmp/wave-lab/token", help="holds key.pem, cert.pem")
    p.add_argument("--issuer", default="wave-lab-issuer")
    p.add_argument("--user", default="wave")
    p.add_argument("--password", default="secret")
    p.add_argument("--ttl", type=int, default=300)
    p.add_argument("--verbose", action="store_true")
    cfg = p.parse_args()
    key, cert = ensure_keys(cfg.dir)
    handler = make_handler(cfg, TokenIssuer(key, cfg.issuer, cfg.ttl))
    srv = ThreadingHTTPServer(("127.0.0.1", cfg.port), handler)
    print(f"token server on http://127.0.0.1:{cfg.port}/token (rootcertbundle: {cert})", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
