"""Fill the `NodeConfig` tree from flags, `NARAFT_*` environment variables and a TOML file.

One precedence, for every setting: a flag given on the command line, else its environment
variable, else its key in the `--config` file, else the default held by the consumer's
settings dataclass (`naraft.config`). One name per setting in all three places: the flag
`--tick-ms`, the file key `tick-ms`, the variable `NARAFT_TICK_MS`. A file key naraft does not
know, or a value out of range anywhere, is a one-line error naming the key; other
`NARAFT_*` variables (the secret, failpoints) are not settings and are left alone.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from naraft.config import (
    DATA_DIR_TOKEN_FILE,
    LOG_LEVELS,
    PROFILES,
    AuthMode,
    LogFormat,
    NodeConfig,
    Profile,
    check_cluster_token,
    parse_address,
    read_cluster_conf,
)
from naraft.errors import InvalidArgumentError, NaraftError
from naraft.tls import CERT_FLAG, KEY_FLAG, PEER_CA_FLAG, PEER_CERT_FLAG, PEER_KEY_FLAG
from naraft.transport.auth import INSECURE_FILE_OPTION, SECRET_ENV_VAR, load_secret

ENV_PREFIX: Final = "NARAFT_"
CONFIG_ENV_VAR: Final = "NARAFT_CONFIG"
ADMIN_PASSWORD_ENV_VAR: Final = "NARAFT_ADMIN_PASSWORD"  # not a setting: never a flag
MAX_ADMIN_PASSWORD_BYTES: Final = 72  # all bcrypt reads
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class ConfigError(NaraftError):
    """A setting that cannot be taken; the message is one line naming where it came from."""


class Kind(enum.Enum):
    INT = "an integer"
    TEXT = "a string"
    PATH = "a path"
    FLAG = "true or false"
    MEMBERS = "a list of host:port"


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting: its name everywhere, where it lands in the tree, and its bounds.

    `path` is the field path in `NodeConfig` (empty for the settings that `build_config`
    turns into identity fields); the tree holds `given * factor` (ms -> s: 0.001)."""

    name: str
    kind: Kind
    help: str
    path: tuple[str, ...] = ()
    factor: float = 1
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    any_case: bool = False  # a choice may be written in any case (log levels)
    default_text: str | None = None  # when the default is not one tree field

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def param(self) -> str:
        return self.name.replace("-", "_")

    def default(self) -> str | None:
        """The default as the operator writes it, read from the tree's own defaults."""
        if self.default_text is not None or not self.path:
            return self.default_text
        value: Any = _DEFAULT_TREE
        for part in self.path:
            value = getattr(value, part)
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, int | float):
            return str(value)
        given = value / self.factor
        return str(int(given)) if float(given).is_integer() else str(given)

    def to_tree(self, given: Any) -> Any:
        if self.factor == 1:
            return given
        value = given * self.factor
        return int(value) if self.factor >= 1 else value

    def check(self, value: Any, where: str) -> Any:
        """`value` (already of the right Python type) within bounds, or ConfigError."""
        too_low = self.low is not None and value < self.low
        too_high = self.high is not None and value > self.high
        if self.kind is Kind.INT and (too_low or too_high):
            raise ConfigError(f"{where}: must be {self._range()}, not {value}")
        if self.choices and self.any_case and isinstance(value, str):
            value = next((c for c in self.choices if c.lower() == value.lower()), value)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where}: must be one of {', '.join(self.choices)}, not {value!r}")
        return value

    def parse_text(self, text: str, where: str) -> Any:
        """An environment variable's text as this setting's value."""
        text = text.strip()
        if self.kind is Kind.INT:
            if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 19:
                raise ConfigError(f"{where}: must be {self._range()}, not {text!r}")
            return self.check(int(text), where)
        if self.kind is Kind.FLAG:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ConfigError(f"{where}: must be true or false, not {text!r}")
        if self.kind is Kind.MEMBERS:
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if not text:
            raise ConfigError(f"{where}: must not be empty")
        return self.check(Path(text) if self.kind is Kind.PATH else text, where)

    def parse_toml(self, value: object, where: str) -> Any:
        """A TOML value as this setting's value: its native type, never a coerced string."""
        if self.kind is Kind.INT and isinstance(value, int) and not isinstance(value, bool):
            return self.check(value, where)
        if self.kind is Kind.FLAG and isinstance(value, bool):
            return value
        if self.kind is Kind.MEMBERS:
            if isinstance(value, str):
                return self.parse_text(value, where)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(v.strip() for v in value)
        if self.kind in (Kind.TEXT, Kind.PATH) and isinstance(value, str) and value.strip():
            return self.parse_text(value, where)
        raise ConfigError(f"{where}: must be {self.kind.value}, not {value!r}")

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an integer in {self.low}..{self.high}"
        if self.low is not None:
            return f"an integer of at least {self.low}"
        return "an integer"

    def click_type(self) -> click.ParamType | type:
        if self.kind is Kind.INT:
            return click.IntRange(self.low, self.high)
        if self.kind is Kind.FLAG:
            return click.BOOL
        if self.choices:
            return click.Choice(self.choices, case_sensitive=not self.any_case)
        if self.kind is Kind.PATH:
            return click.Path(path_type=Path)
        return str


_DEFAULT_TREE: Final = NodeConfig(
    id="127.0.0.1:8848",
    peers=("127.0.0.1:8848",),
    data_dir=Path("data"),
    secret=None,
    listen_host="127.0.0.1",
    listen_port=8848,
)
_MS: Final = 0.001


def _int(name: str, path: tuple[str, ...], help: str, low: int, high: int | None = None, *,
         factor: float = 1, default_text: str | None = None) -> Setting:  # fmt: skip
    return Setting(
        name=name, kind=Kind.INT, help=help, path=path, factor=factor, low=low, high=high,
        default_text=default_text,
    )  # fmt: skip


_PROFILE_DEFAULT: Final = "from --profile"

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(name="id", kind=Kind.TEXT, help="this node's address, host:port (required)"),
    Setting(name="listen", kind=Kind.TEXT, help="address to bind, host:port",
            default_text="the id"),
    Setting(name="peers", kind=Kind.MEMBERS, help="every member, comma-separated host:port",
            default_text="none"),
    Setting(name="cluster-conf", kind=Kind.PATH, help="Nacos cluster.conf: one host:port a line",
            default_text="none"),
    Setting(name="standalone", kind=Kind.FLAG, help="one-node mode: commits locally",
            default_text="false"),
    Setting(name="join", kind=Kind.TEXT,
            help="URL of a running member: start empty and wait for `naraft member add`",
            default_text="none"),
    Setting(name="data-dir", kind=Kind.PATH, help="where the node keeps its data (required)"),
    Setting(name="profile", kind=Kind.TEXT, help="timer profile",
            choices=tuple(p.value for p in Profile), default_text=Profile.DEFAULT.value),
    _int("tick-ms", ("timers", "tick_seconds"), "Raft tick length", 1, 10_000, factor=_MS,
         default_text=_PROFILE_DEFAULT),
    _int("election-ticks", ("timers", "election_ticks"), "election timeout in ticks", 2, 10_000,
         default_text=_PROFILE_DEFAULT),
    _int("heartbeat-ticks", ("timers", "heartbeat_ticks"), "leader beat in ticks", 1, 10_000,
         default_text=_PROFILE_DEFAULT),
    Setting(name="cluster-secret-file", kind=Kind.PATH,
            help=f"file holding the peer secret (or set {SECRET_ENV_VAR})", default_text="none"),
    Setting(name=INSECURE_FILE_OPTION.removeprefix("--"), kind=Kind.FLAG,
            help="accept a secret file that its group or others may read (refused otherwise)",
            default_text="false"),
    Setting(name="cluster-token", kind=Kind.TEXT, path=("cluster_token",),
            help="with the member list, gives the cluster id kept in the data directory; use"
            " a new one for every new cluster"),
    _int("header-timeout-ms", ("http", "header_timeout_seconds"),
         "close a connection whose request headers take longer, from their first byte",
         100, 600_000, factor=_MS),
    _int("body-timeout-ms", ("http", "body_timeout_seconds"),
         "close a connection whose request body takes longer, once its headers are in",
         100, 600_000, factor=_MS),
    _int("idle-timeout-ms", ("http", "idle_timeout_seconds"),
         "close a keep-alive connection idle for longer", 100, 3_600_000, factor=_MS),
    _int("max-connections", ("http", "max_connections"),
         "client connections at once; more are answered 503 (peers are counted apart)",
         1, 1_000_000),
    _int("grpc-port-offset", ("grpc", "port_offset"),
         "the Nacos 2.x gRPC port is the client port plus this", 1, 30_000),
    _int("grpc-max-connections", ("grpc", "max_connections"),
         "2.x client connections at once; more are told to move to another node",
         1, 1_000_000),
    _int("grpc-max-message-mib", ("grpc", "max_message_bytes"),
         "the largest gRPC message taken or sent", 1, 64, factor=1024 * 1024),
    _int("grpc-push-timeout-ms", ("grpc", "push_timeout_seconds"),
         "wait this long for a client to answer a push before trying again", 100,
         60_000, factor=_MS),
    _int("max-params", ("http", "max_params"),
         "query plus form parameters of one request; more are answered 400", 1, 100_000),
    _int("unhealthy-after-ms", ("health", "policy", "unhealthy_after_ms"),
         "an ephemeral instance without beats turns unhealthy after this long", 1),
    _int("remove-after-ms", ("health", "policy", "remove_after_ms"),
         "an ephemeral instance without beats is removed after this long", 1),
    _int("sweep-ms", ("health", "sweep_interval_seconds"),
         "how often the leader looks for silent instances", 10, factor=_MS),
    _int("connection-beat-ms", ("health", "connection_beat_interval_seconds"),
         "how often a node beats the ephemeral instances its live client connections (Nacos"
         " 2.x gRPC) registered, to the leader (at most a third of unhealthy-after-ms)",
         10, 3_600_000, factor=_MS),
    _int("push-ack-timeout-ms", ("push", "ack_timeout_ms"),
         "UDP push: resend an unacked packet after this long (Nacos: 10 s)", 10),
    _int("push-retries", ("push", "max_retries"),
         "UDP push: resends of an unacked packet (Nacos: 1)", 0, 100),
    _int("compact-entries", ("compaction", "max_log_entries"),
         "compact the log once it holds more entries than this after the snapshot", 1),
    _int("compact-keep", ("compaction", "keep_entries"), "log tail kept when compacting", 0),
    _int("digest-batch", ("digest", "sync", "batch_keys"), "datums per catch-up fetch", 1, 5000),
    _int("digest-parallel", ("digest", "sync", "parallel"), "catch-up fetches in flight", 1, 64),
    _int("checksum-interval-ms", ("digest", "checksum_interval_seconds"),
         "leader's state-checksum reports to followers (0: off)", 0, factor=_MS),
    _int("peer-max-body-mib", ("peer", "max_body_bytes"),
         "largest peer request taken, compressed or not (the client API keeps 1 MiB)",
         8, 1024, factor=1024 * 1024),
    _int("max-append-kib", ("peer", "max_append_bytes"),
         "entries' bytes per AppendEntries message (always at least one entry)",
         64, 65536, factor=1024),
    Setting(name="peer-protocol", kind=Kind.TEXT, path=("peer", "protocol"),
            help="peer protocol versions this node speaks, LOW..HIGH; a peer sharing none is"
            " refused (override only to test mixed versions)"),
    _int("quota-bytes", ("quota_bytes",),
         "bound on the replicated state (keys + values); the leader's applies; 0: none", 0),
    Setting(name="auth", kind=Kind.TEXT, path=("auth", "mode"),
            help="logins, tokens and permissions: auto is on unless the node listens on "
            "loopback only", choices=tuple(m.value for m in AuthMode)),
    Setting(name="admin-password-file", kind=Kind.PATH, path=("auth", "admin_password_file"),
            help=f"the first admin's password, read at the cluster's first start (or set "
            f"{ADMIN_PASSWORD_ENV_VAR}; else one is generated into the data directory)",
            default_text="none"),
    _int("token-ttl-seconds", ("auth", "token_ttl_seconds"),
         "how long an access token from a login is valid (Nacos's tokenTtl)", 1, 31_536_000),
    _int("login-failures-per-minute", ("auth", "login_failures_per_minute"),
         "failed logins taken from one source address per minute; more are refused", 1, 100_000),
    _int("config-max-content-bytes", ("configs", "max_content_bytes"),
         "largest config content taken (UTF-8 bytes; Nacos: 10 MiB)", 1, 1 << 30),
    _int("config-history-days", ("configs", "history_days"),
         "config history records older than this are pruned (Nacos: 30)", 1, 3650),
    _int("config-max-polls", ("configs", "max_held_polls"),
         "config long polls one node holds at once; more are answered 503", 1, 1_000_000),
    _int("config-max-poll-keys", ("configs", "max_poll_keys"),
         "configs one long poll may watch; more are answered 400", 1, 100_000),
    Setting(name=CERT_FLAG[2:], kind=Kind.PATH, path=("tls", "cert_file"),
            help="PEM certificate (chain) the HTTP port presents to clients; turns on TLS",
            default_text="none: plaintext"),
    Setting(name=KEY_FLAG[2:], kind=Kind.PATH, path=("tls", "key_file"),
            help="PEM private key of --tls-cert-file", default_text="none"),
    Setting(name=PEER_CERT_FLAG[2:], kind=Kind.PATH, path=("tls", "peer_cert_file"),
            help="PEM certificate this node presents to members and as a member; turns on "
            "mutual TLS between members, who then refuse plaintext peers", default_text="none"),
    Setting(name=PEER_KEY_FLAG[2:], kind=Kind.PATH, path=("tls", "peer_key_file"),
            help="PEM private key of --peer-tls-cert-file", default_text="none"),
    Setting(name=PEER_CA_FLAG[2:], kind=Kind.PATH, path=("tls", "peer_trusted_ca_file"),
            help="PEM CA that signs every member's peer certificate (and only those)",
            default_text="none"),
    Setting(name="log-level", kind=Kind.TEXT, path=("log", "level"), help="log level",
            choices=LOG_LEVELS, any_case=True),
    Setting(name="log-format", kind=Kind.TEXT, path=("log", "format"),
            help="log lines as text, or as one JSON object a line",
            choices=tuple(f.value for f in LogFormat), any_case=True),
    Setting(name="access-log", kind=Kind.FLAG, path=("log", "access_log"),
            help="log every HTTP request (method, path, status, time), as Nacos does"),
)  # fmt: skip
BY_NAME: Final = {s.name: s for s in SETTINGS}


def server_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one click option per setting plus `--config`; every option defaults
    to None ("not given") and its help shows the default the tree falls back to."""
    for setting in reversed(SETTINGS):
        shown = setting.default()
        # a flag whose default is true needs its negative form to be turned off
        negative = setting.kind is Kind.FLAG and setting.default() == "true"
        command = click.option(
            f"{setting.flag}/--no-{setting.name}" if negative else setting.flag,
            setting.param,
            type=setting.click_type(),
            is_flag=setting.kind is Kind.FLAG,
            default=None,
            help=f"{setting.help} [default: {shown}; env {setting.env_var}]"
            if shown is not None
            else f"{setting.help} [env {setting.env_var}]",
        )(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"TOML file of settings, keys named as the flags [env {CONFIG_ENV_VAR}]",
    )(command)


def flags_given(ctx: click.Context, values: Mapping[str, object]) -> dict[str, object]:
    """The settings typed on the command line (the flag layer), by setting name."""
    given: dict[str, object] = {}
    for setting in SETTINGS:
        source = ctx.get_parameter_source(setting.param)
        if source is click.core.ParameterSource.COMMANDLINE:
            value = values[setting.param]
            given[setting.name] = tuple(
                p.strip() for p in str(value).split(",") if p.strip()
            ) if setting.kind is Kind.MEMBERS else value  # fmt: skip
    return given


def from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The settings set in `env` (the environment layer)."""
    return {s.name: s.parse_text(env[s.env_var], s.env_var) for s in SETTINGS if s.env_var in env}


def from_file(path: Path) -> dict[str, object]:
    """The settings of a TOML file (the file layer); an unknown key is an error."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read the config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: not valid TOML: {error}") from None
    values: dict[str, object] = {}
    for key, value in document.items():
        setting = BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        values[key] = setting.parse_toml(value, f"config file {path}: {key}")
    return values


def merge(
    *, flags: Mapping[str, object], env: Mapping[str, str], file: Path | None
) -> dict[str, object]:
    """flag > environment > file > default, setting by setting. The file is `file` (the
    `--config` flag) or else the one `NARAFT_CONFIG` names."""
    if file is None and env.get(CONFIG_ENV_VAR, "").strip():
        file = Path(env[CONFIG_ENV_VAR].strip())
    merged: dict[str, object] = {}
    if file is not None:
        merged.update(from_file(file))
    merged.update(from_env(env))
    merged.update(flags)
    return merged


def build_config(values: Mapping[str, object], env: Mapping[str, str] = os.environ) -> NodeConfig:
    """The validated tree for the merged `values`; reads the member file and the secret."""
    node_id = _required(values, "id")
    data_dir = Path(_required(values, "data-dir"))
    host, port = parse_address(str(values.get("listen") or node_id), field="listen")
    profile = Profile(str(values.get("profile", Profile.DEFAULT.value)))
    config = NodeConfig(
        id=node_id,
        peers=_members(node_id, values),
        data_dir=data_dir,
        secret=load_secret(
            _optional_path(values.get("cluster-secret-file")),
            env,
            allow_insecure_file=bool(values.get(INSECURE_FILE_OPTION.removeprefix("--"))),
        ),
        listen_host=host,
        listen_port=port,
        timers=PROFILES[profile],
        cluster_conf=_optional_path(values.get("cluster-conf")),
        join=None if values.get("join") is None else str(values["join"]),
    )
    for name, given in values.items():
        setting = BY_NAME[name]
        if setting.path:
            value = AuthMode(str(given)) if setting.name == "auth" else setting.to_tree(given)
            config = _replace(config, setting.path, value)
    token_file = data_dir / DATA_DIR_TOKEN_FILE
    if "cluster-token" not in values and token_file.is_file():  # a restored data directory
        try:
            token = check_cluster_token(token_file.read_text(errors="replace").strip()[:1024])
        except InvalidArgumentError as error:
            raise ConfigError(f"{token_file}: {error}") from None
        config = dataclasses.replace(config, cluster_token=token)
    password = env.get(ADMIN_PASSWORD_ENV_VAR, "").strip()
    if len(password.encode()) > MAX_ADMIN_PASSWORD_BYTES:
        raise ConfigError(f"{ADMIN_PASSWORD_ENV_VAR}: at most {MAX_ADMIN_PASSWORD_BYTES} bytes")
    if password:
        config = _replace(config, ("auth", "admin_password"), password)
    return config.validate()


def _replace(node: Any, path: tuple[str, ...], value: object) -> Any:
    head, *rest = path
    new = value if not rest else _replace(getattr(node, head), tuple(rest), value)
    return dataclasses.replace(node, **{head: new})


def _members(node_id: str, values: Mapping[str, object]) -> tuple[str, ...]:
    peers = values.get("peers")
    cluster_conf = _optional_path(values.get("cluster-conf"))
    standalone = bool(values.get("standalone"))
    join = values.get("join") is not None
    if sum((peers is not None, cluster_conf is not None, standalone, join)) != 1:
        raise ConfigError("give exactly one of --peers, --cluster-conf, --standalone, --join")
    if join:
        return ()  # learnt from the cluster at start
    if standalone:
        return (node_id,)
    if cluster_conf is not None:
        return read_cluster_conf(cluster_conf)
    assert isinstance(peers, tuple)
    return tuple(str(p) for p in peers)


def _required(values: Mapping[str, object], name: str) -> str:
    value = values.get(name)
    if value is None:
        setting = BY_NAME[name]
        raise ConfigError(f"missing {setting.flag} (or {setting.env_var}, or {name} in --config)")
    return str(value)


def _optional_path(value: object) -> Path | None:
    return None if value is None else Path(str(value))
