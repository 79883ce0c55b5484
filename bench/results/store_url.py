"""Where a history store is, as its user wrote it, and how to name it without its secrets.

A PostgreSQL store is named by a URL (postgresql://user:password@host:port/db?option=value) or by
libpq's key=value string (host=h user=u password='a b\\'c' dbname=d). Both are parsed here, the
way libpq parses them, before libpq sees them. libpq quotes pieces of what it cannot parse in its
messages ('invalid percent-encoded token: "..."', 'missing "=" after "..."', the host "ss@host"
of a password that held a raw @), so a redaction of the text alone left pieces of a password in
the error line, in `bench run`'s stderr and in run.json's argv. Here every form of each secret is
known from the parse (as typed, percent-decoded, percent-encoded, quoted for key=value) and
replaced by ***, and a URL that libpq would split inside its password is refused, unused, with a
line that says how to write it.

The harness's own option, in either form: `schema=NAME` (default `bench`), the PostgreSQL schema
that holds the harness's tables. It is taken out before libpq sees the string (libpq refuses
options it does not know); the name is the one Prisma's PostgreSQL URLs use for the same thing.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from bench.errors import BenchError

DEFAULT_PG_SCHEMA = "bench"
SCHEMA_OPTION = "schema"
# libpq's options whose values are secrets.
SECRET_OPTIONS = frozenset({"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"})
# Lower case only: PostgreSQL folds unquoted names to lower case, so "Bench" in a URL would name a
# schema that psql users could not type as they read it. 63 bytes is PostgreSQL's name limit;
# pg_ names are reserved to the system.
_SCHEMA_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")
_URL_SCHEMES = ("postgresql://", "postgres://")
# A secret shorter than this is not scrubbed from free text by value (any message holds "a" or
# "pw" by chance); where it was written (user:...@, password=...) is redacted whatever its length.
_MIN_SCRUBBED = 4


class StoreError(BenchError):
    """The history store cannot be opened or written (exit 2); the message holds no password."""


# libpq's key=value connection string ("host=h dbname=d password=..."): recognised as PostgreSQL,
# never taken for a file name (which would put the password in the working directory's listing).
_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=")


def is_postgres(url: str) -> bool:
    """Whether `url` is one of the forms libpq accepts: a postgresql:// or postgres:// URI, or a
    key=value connection string."""
    return url.startswith(_URL_SCHEMES) or bool(_CONNINFO.match(url))


@dataclass(frozen=True)
class PgLocation:
    """A PostgreSQL store as parsed: what libpq gets, the harness's schema, the string to show."""

    conninfo: str  # the user's string without the schema option, for libpq
    schema: str
    shown: str  # the user's string with every secret replaced by ***
    secrets: tuple[str, ...]  # every form of every secret in it, longest first


class _Unparsable(ValueError):
    """A key=value string libpq would refuse; the message quotes nothing of the string."""


# --- the URL form ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Url:
    scheme: str
    user: str | None  # None: no user@ part
    password: str | None  # as typed: everything from user: to the last @ (a host never holds @)
    tail: str  # hosts, port, /dbname, ?query: after the credentials' @
    params: tuple[tuple[str, str | None], ...]  # the query as written: (key, raw value or None without "=")

    def text(self, *, hide: bool, drop: frozenset[str] = frozenset()) -> str:
        out = self.scheme
        if self.user is not None:
            out += self.user + ("" if self.password is None else ":" + ("***" if hide else self.password)) + "@"
        if hide:
            # A password in the query ends where no one can tell (a raw & or space in it), so
            # everything after its key goes, and the rest of the query with it.
            m = _QUERY_SECRET.search(self.tail)
            return out + (self.tail[:m.end()] + "***" if m else self.tail)
        base = self.tail.partition("?")[0]
        query = [k if v is None else f"{k}={v}" for k, v in self.params if unquote(k) not in drop]
        return out + base + ("?" + "&".join(query) if query else "")


def _is_secret(key: str) -> bool:
    return unquote(key).strip().lower() in SECRET_OPTIONS


_QUERY_SECRET = re.compile(r"[?&](?:" + "|".join(sorted(SECRET_OPTIONS)) + r")=", re.IGNORECASE)
_URL_USER = re.compile(r"[^:/@]*")


def _split_url(url: str) -> _Url:
    """The URL's parts as libpq takes them, but for credentials typed raw: the user runs to the
    first : or @, the password from that : to the last @ of the URL (libpq would stop at its first
    @ or /, and take the rest of the password for a host it then names in its error)."""
    scheme = next(s for s in _URL_SCHEMES if url.startswith(s))
    rest = url[len(scheme):]
    user_end = _URL_USER.match(rest).end()
    user = password = None
    tail = rest
    if rest[user_end:user_end + 1] == "@":
        user, tail = rest[:user_end], rest[user_end + 1:]
    elif rest[user_end:user_end + 1] == ":" and "@" in rest[user_end:]:
        at = rest.rfind("@")
        user, password, tail = rest[:user_end], rest[user_end + 1:at], rest[at + 1:]
    q, query = tail.partition("?")[1:]
    params = tuple((k, v if eq else None) for k, eq, v in (p.partition("=") for p in query.split("&"))) if q else ()
    return _Url(scheme, user, password, tail, params)


# What libpq cannot take raw in user:password@: it ends the credentials at the first @ or /, it
# refuses spaces, and % must start %XX. Anything else it takes as written. In a query value:
# spaces and a lone %, and libpq quotes the value it refuses.
_RAW_IN_USERINFO = re.compile(r"[@/\s]|%(?![0-9A-Fa-f]{2})")
_RAW_IN_QUERY = re.compile(r"\s|%(?![0-9A-Fa-f]{2})")


def _url_secrets(u: _Url) -> list[str]:
    raw = ([u.password] if u.password else []) + [v for k, v in u.params if v and _is_secret(k)]
    m = _QUERY_SECRET.search(u.tail)
    if m:  # a query password typed raw may run on past an & or a space: its whole rest is secret
        raw.append(u.tail[m.end():])
    return _forms(raw, decode=True)


def _forms(raw: list[str], decode: bool) -> list[str]:
    """Each secret as typed, decoded, percent-encoded and quoted for key=value."""
    out: set[str] = set()
    for r in raw:
        plain = unquote(r) if decode else r
        out |= {r, plain, quote(plain, safe=""), _kv_quote(plain)}
    return sorted((s for s in out if s), key=len, reverse=True)


_PERCENT_ENCODE = ("write it as %40 %2F %20 %25 (Python: urllib.parse.quote(password, safe='')), "
                   "or use the key=value form (password='...')")


def _parse_url(url: str) -> PgLocation:
    u = _split_url(url)
    shown = u.text(hide=True)
    credentials = (u.user or "") + ":" + (u.password or "")
    if _RAW_IN_USERINFO.search(credentials) or (u.user is None and "@" in u.tail.partition("?")[0]):
        raise StoreError(f"{shown}: the user name or password holds a character that a URL must percent-encode "
                         f"(@ / a space, or a % not followed by two hex digits): {_PERCENT_ENCODE}")
    if any(v is not None and _is_secret(k) and _RAW_IN_QUERY.search(v) for k, v in u.params):
        raise StoreError(f"{shown}: the password in the query holds a character that a URL must percent-encode "
                         f"(a space, or a % not followed by two hex digits): {_PERCENT_ENCODE}")
    bare = [k for k, v in u.params if v is None and k]
    if bare:
        raise StoreError(f"{shown}: a query parameter is not KEY=VALUE (percent-encode & and = inside values)")
    known = _libpq_options()
    if known is not None and any(_is_secret(k) for k, _ in u.params) and any(
            unquote(k) not in known | {SCHEMA_OPTION, "ssl"} for k, _ in u.params):
        # Not named: beside a password in the query it may be the rest of one that held a raw &.
        raise StoreError(f"{shown}: a query parameter is not a libpq option (percent-encode & = # inside values)")
    schemas = [unquote(v) for k, v in u.params if unquote(k) == SCHEMA_OPTION and v is not None]
    schema = _schema(schemas, shown)
    return PgLocation(u.text(hide=False, drop=frozenset({SCHEMA_OPTION})), schema, shown, tuple(_url_secrets(u)))


# --- the key=value form ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    key: str
    value: str  # unquoted, unescaped
    start: int  # of the key
    value_start: int  # of the value as written (its quote included)
    end: int


def _kv_tokens(text: str) -> list[_Token]:
    """libpq's conninfo_parse: key = value, spaces around = optional; a value in single quotes
    may hold spaces, with \\' and \\\\ inside; an unquoted value ends at a space."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            raise _Unparsable(f"option {len(out) + 1} has no '=' (a value holding spaces must be quoted: "
                              "password='a b', with \\' and \\\\ inside)")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value_start, chars = i, []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise _Unparsable(f"the value of option {len(out) + 1} has no closing quote "
                                      "(write \\' for a quote inside a quoted value)")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                else:
                    chars.append(text[i])
                    i += 1
        out.append(_Token(key, "".join(chars), start, value_start, i))


def _kv_quote(value: str) -> str:
    """`value` as key=value writes it quoted (psycopg's make_conninfo does the same)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FIRST_SECRET_KEY = re.compile(r"(?:^|\s)(?:" + "|".join(sorted(SECRET_OPTIONS)) + r")\s*=\s*", re.IGNORECASE)


def _kv_shown(text: str) -> tuple[str, list[str]]:
    """The key=value string with its secrets as ***, and the secrets; a string libpq could not
    parse is cut at its first secret option (where its value ends cannot be known)."""
    try:
        tokens = _kv_tokens(text)
    except _Unparsable:
        m = _FIRST_SECRET_KEY.search(text)
        if m is None:
            return text, []
        tail = text[m.end():].strip()
        return text[:m.end()] + "***", _forms([tail] + tail.split(), decode=False)
    shown, secrets = text, []
    for t in reversed(tokens):
        if t.key.lower() in SECRET_OPTIONS:
            shown = shown[:t.value_start] + "***" + shown[t.end:]
            secrets += [t.value, text[t.value_start:t.end]]
    known = _libpq_options()
    if secrets and known is not None and any(t.key not in known and t.key != SCHEMA_OPTION for t in tokens):
        # An option libpq does not know, beside a secret: most likely the rest of an unquoted
        # password that held a space ("password=a b=c"). Everything after the secret goes.
        m = _FIRST_SECRET_KEY.search(text)
        if m is not None:
            tail = text[m.end():].strip()
            return text[:m.end()] + "***", _forms(secrets + [tail] + tail.split(), decode=False)
    return shown, _forms(secrets, decode=False)


def _parse_kv(text: str) -> PgLocation:
    shown, secrets = _kv_shown(text)
    try:
        tokens = _kv_tokens(text)
    except _Unparsable as exc:
        raise StoreError(f"{shown}: not a libpq key=value string: {exc}") from None
    known = _libpq_options()
    unknown = [t.key for t in tokens if known is not None and t.key not in known and t.key != SCHEMA_OPTION]
    if unknown:
        # Named only when no secret is in the string: beside one it may be a piece of a password.
        what = f"{unknown[0]!r} is not a libpq option" if not secrets else "an option is not one libpq knows"
        raise StoreError(f"{shown}: {what} (a value holding spaces must be quoted: password='a b')")
    schema = _schema([t.value for t in tokens if t.key == SCHEMA_OPTION], shown)
    conninfo = text
    for t in reversed(tokens):
        if t.key == SCHEMA_OPTION:
            conninfo = conninfo[:t.start] + conninfo[t.end:]
    return PgLocation(conninfo.strip(), schema, shown, tuple(secrets))


@functools.lru_cache(maxsize=1)
def _libpq_options() -> frozenset[str] | None:
    """The option names this libpq knows (None without psycopg: then nothing is refused here)."""
    try:
        from psycopg import pq
    except ImportError:
        return None
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


def _schema(given: list[str], shown: str) -> str:
    if not given:
        return DEFAULT_PG_SCHEMA
    if len(set(given)) > 1:
        raise StoreError(f"{shown}: {SCHEMA_OPTION}= given twice, as {given[0]!r} and {given[1]!r}")
    if not _SCHEMA_NAME.fullmatch(given[0]):
        raise StoreError(f"{shown}: {SCHEMA_OPTION}={given[0]!r}: expected a PostgreSQL schema name of lower-case "
                         "letters, digits and _ (not starting with a digit or pg_), at most 63 characters")
    return given[0]


# --- both ------------------------------------------------------------------------------------

def parse_postgres(url: str) -> PgLocation:
    """A PostgreSQL store's URL or key=value string, checked and split; StoreError (whose line
    holds no secret) when libpq would misread it."""
    loc = _parse_url(url) if url.startswith(_URL_SCHEMES) else _parse_kv(url)
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return loc
    try:
        conninfo_to_dict(loc.conninfo)
    except Exception as exc:  # psycopg.ProgrammingError: libpq's own parse, in its words
        raise StoreError(f"{loc.shown}: not a valid PostgreSQL connection string: {driver_message(exc, loc)}") from None
    return loc


def driver_message(exc: BaseException, loc: PgLocation) -> str:
    """The first line of a driver's error, with every form of the location's secrets as ***."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return redact(line, secrets=loc.secrets)


def secrets_of(url: str) -> list[str]:
    """Every form of every secret in a store URL or key=value string (none for a file path)."""
    if url.startswith(_URL_SCHEMES):
        return _url_secrets(_split_url(url))
    if _CONNINFO.match(url):
        return _kv_shown(url)[1]
    return []


def shown(url: str) -> str:
    """A store URL or key=value string as it may be printed: every secret as ***."""
    if url.startswith(_URL_SCHEMES):
        return _split_url(url).text(hide=True)
    if _CONNINFO.match(url):
        return _kv_shown(url)[0]
    return redact(url)


# --- free text -------------------------------------------------------------------------------

# user:PASSWORD@ in any URL: the password runs to the last @ of its line, as a password typed raw
# may hold @, / and spaces (a host never holds @). Where the line holds another @ later, more is
# hidden than the password: never less.
_USERINFO = re.compile(r"(://[^:/@\s]*:)[^\n]*@")
# key=value or key: value for the names of secrets, the key and the value each maybe quoted
# ("api_key": "sk-...", password='x'); `token` and `pwd` only with "=" (a parser's "unexpected
# token: ')'" is not a secret). A quoted value is replaced whole (backslash escapes included,
# libpq's password='a\'b' among them; an unclosed quote to the end of its line), an unquoted one
# up to a delimiter.
_SECRET_KEY = (r"[\w-]*?(?:(?:password|passwd|secret|api[_-]?key|access[_-]?key|client[_-]?secret"
               r"|scram[_-]?(?:client|server)[_-]?key)[\"']?\s*[=:]"
               r"|(?:token|pwd)[\"']?\s*=)")
_PASSWORD_PARAM = re.compile(
    r"((?:^|[?&\s,;({\[\"'])" + _SECRET_KEY + r"\s*)"
    r"(?:\"(?:[^\"\\\n]|\\.)*(?:\"|$)|'(?:[^'\\\n]|\\.)*(?:'|$)|[^&\s,;)}\]\"']*)",
    re.IGNORECASE | re.MULTILINE)
_BEARER = re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+")
# An argv word may be --db=VALUE: VALUE is then judged as a store string of its own.
_OPTION_PREFIX = re.compile(r"(--[\w-]+=)?")


def redact(text: str, *urls: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Text with every password in it replaced by ***: user:PASSWORD@ in any URL, anywhere in the
    text (an argv word like --db=postgresql://u:pw@h counts), password=... parameters (and
    token, secret, api_key, ... with = or :), Bearer tokens, a whole libpq key=value string's
    secrets as libpq parses them, and, for each store URL given, every form of its secrets
    wherever they stand (a driver's message may quote a piece of the URL)."""
    known = {s for url in urls for s in secrets_of(url)} | set(secrets)
    for s in sorted(known, key=len, reverse=True):
        if len(s) >= _MIN_SCRUBBED:
            text = text.replace(s, "***")
    prefix = _OPTION_PREFIX.match(text).group(0)
    body = text[len(prefix):]
    if "\n" not in body and is_postgres(body):  # one store string (an argv word): parsed, as libpq would
        text = prefix + shown(body)
    return _BEARER.sub(r"\1***", _PASSWORD_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text)))
