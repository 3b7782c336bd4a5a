"""Users, tokens and organisations of the local hub, read from a users file (YAML or JSON).

    users:
      alice:
        tokens: [hf_alice_write]                 # a plain string is a write token
        fullname: Alice                          # optional
      bob:
        tokens: [{token: hf_bob_read, role: read}]
    orgs:
      acme: [alice]                              # members

A user may write to their own namespace and to the orgs they belong to. Read tokens can read private
repos of those namespaces but write nothing: no commit, repo change, discussion, comment or status
change, as on the Hub. The file is re-read when it changes, so users can be added to a running server;
an edit that breaks it is logged and the server keeps the users it had, rather than failing every request.
Messages name users and lines of the file, never a token.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..bounded import TooComplexError, load_json, load_yaml
from .errors import Forbidden, Unauthorized

logger = logging.getLogger("hf_probex.hub")


class UsersFileError(ValueError):
    """The users file is missing or malformed."""


@dataclass(frozen=True)
class User:
    """An authenticated caller: their name, the role of the token they used, and their orgs."""

    name: str
    role: str  # "write" | "read"
    orgs: tuple[str, ...] = ()
    fullname: str = ""
    token_name: str = "hf_probex local hub token"

    def namespaces(self) -> set[str]:
        return {self.name, *self.orgs}

    def can_read_private(self, namespace: str) -> bool:
        return namespace in self.namespaces()

    def can_write(self, namespace: str) -> bool:
        return self.role == "write" and namespace in self.namespaces()


@dataclass
class Users:
    """The parsed users file; `identify` maps a bearer token to a User."""

    by_token: dict[str, User] = field(default_factory=dict)
    orgs: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: object, source: str = "users file") -> "Users":
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise UsersFileError(f"{source}: expected a mapping with 'users' and 'orgs'")
        orgs = data.get("orgs") or {}
        users = data.get("users") or {}
        if not isinstance(orgs, dict) or not isinstance(users, dict):
            raise UsersFileError(f"{source}: 'users' and 'orgs' must be mappings")
        for org, members in orgs.items():
            if not isinstance(members or [], list):
                raise UsersFileError(f"{source}: the members of org {org!r} must be a list of user names")
        result = cls(orgs={str(org): [str(m) for m in members or []] for org, members in orgs.items()})
        for name, entry in users.items():
            entry = entry or {}
            if not isinstance(entry, dict) or not isinstance(entry.get("tokens", []), list):
                raise UsersFileError(f"{source}: user {name!r} must be a mapping with 'tokens': a list")
            member_of = tuple(sorted(org for org, members in result.orgs.items() if name in members))
            for token in entry.get("tokens", []):
                if isinstance(token, dict):
                    value, role = token.get("token"), token.get("role", "write")
                else:
                    value, role = token, "write"
                if not isinstance(value, str) or not value or role not in ("read", "write"):
                    raise UsersFileError(f"{source}: user {name!r} has a token that is not a string with role read|write")
                if value in result.by_token:
                    raise UsersFileError(f"{source}: a token of user {name!r} is used twice")
                result.by_token[value] = User(name=str(name), role=role, orgs=member_of,
                                              fullname=str(entry.get("fullname", name)))
        return result

    def identify(self, authorization: str | None) -> User | None:
        """The user behind an `Authorization: Bearer <token>` header; None if no header; 401 if unknown."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            # This exact message makes the client raise a plain 401 rather than RepositoryNotFoundError.
            raise Unauthorized("Invalid credentials in Authorization header")
        return user


class UsersFile:
    """A users file on disk, re-parsed whenever its modification time changes.

    The first read must succeed (a clear error at start-up); a later one that fails keeps the last
    good users and logs a warning once per version of the file.
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self._stamp: float | None = None
        self._users = Users()
        if self.path is not None:
            self._users, self._stamp = self._read()

    def _read(self) -> tuple[Users, float]:
        """(users, modification time) of the file; UsersFileError, in one line, when it is unusable."""
        try:
            stamp = self.path.stat().st_mtime
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsersFileError(f"users file {self.path} does not exist: create it or point to another") from None
        except (OSError, UnicodeDecodeError) as err:
            raise UsersFileError(f"users file {self.path} cannot be read ({type(err).__name__}): "
                                 "check its permissions and that it is UTF-8 text") from None
        kind = "JSON" if self.path.suffix == ".json" else "YAML"
        try:
            data = load_json(text) if kind == "JSON" else load_yaml(text)
        except (ValueError, yaml.YAMLError) as err:
            raise UsersFileError(f"users file {self.path} is not valid {kind} ({_where(err)}): fix it") from None
        return Users.parse(data, f"users file {self.path}"), stamp

    def current(self) -> Users:
        if self.path is None:
            return self._users
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._users, self._stamp = self._read()
            except UsersFileError as err:
                self._stamp = stamp  # warn once per version of the file, not on every request
                logger.warning("%s; still serving the users of its last valid version", err)
        return self._users


def _where(err: Exception) -> str:
    """Where a parser failed and why, without quoting the file (it holds tokens)."""
    mark = getattr(err, "problem_mark", None)
    if mark is not None:  # yaml.MarkedYAMLError
        return f"line {mark.line + 1}: {getattr(err, 'problem', None) or 'syntax error'}"
    if isinstance(err, json.JSONDecodeError):
        return f"line {err.lineno}: {err.msg}"
    if isinstance(err, TooComplexError):  # sizes and depths, no content
        return str(err)
    return type(err).__name__


def require_user(user: User | None) -> User:
    """The caller, or 401 when the request carries no token."""
    if user is None:
        raise Unauthorized("You must be authenticated to do this: pass a token (Authorization: Bearer ...)")
    return user


def require_write_token(user: User | None) -> User:
    """The caller, if their token may write at all (anything beyond reading); 401 without one, 403 if read-only."""
    user = require_user(user)
    if user.role != "write":
        raise Forbidden("This token is read-only: use a token with the write role for this action")
    return user


def require_write(user: User | None, namespace: str) -> User:
    """The caller, if they may write to `namespace`; 401 without a token, 403 otherwise."""
    user = require_write_token(user)
    if not user.can_write(namespace):
        raise Forbidden(f"You don't have the rights to write to the namespace {namespace}")
    return user
