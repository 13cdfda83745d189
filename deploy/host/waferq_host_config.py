"""Run the host from /etc/waferq/host.toml: the systemd service's entry point.

    python3 -m waferq_host_config [--config /etc/waferq/host.toml] watch|status|argv

``watch`` runs ``host_stm32mp1 watch`` on the inbox with the configured board,
model, store and key; ``status`` queries every configured board (the health
check after a deploy); ``argv`` prints the command lines it would run. The file
(all keys but ``boards``, ``inbox`` and ``model`` optional):

    boards = ["192.168.10.2:5150"]        # HOST:PORT of each board service
    inbox = "/srv/waferq/inbox"           # folder the tester drops map files into
    model = "/usr/share/waferq/model"     # export folder (model.json, weights.bin)
    db = "sqlite:////var/lib/waferq/results.sqlite"   # or postgresql://user@host/db
    key_file = "/etc/waferq/wire.key"     # pre-shared HMAC key, mode 0600
    batch = 64
    poll_interval = 2.0
    timeout = 60.0
    retries = 5
    pass_bins = [1]                       # STDF hard bins that pass
    verbose = false

Unknown keys are refused, so a misspelt one does not silently fall back to a
default. Under systemd (``$JOURNAL_STREAM`` set) log records go to stderr
with the ``<N>`` syslog-priority prefix that journald reads as the level.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib

DEFAULT_CONFIG = "/etc/waferq/host.toml"
# key -> (accepted types, required)
KEYS = {
    "boards": ((list,), True), "inbox": ((str,), True), "model": ((str,), True),
    "db": ((str,), False), "key_file": ((str,), False), "batch": ((int,), False),
    "poll_interval": ((int, float), False), "timeout": ((int, float), False),
    "retries": ((int,), False), "pass_bins": ((list,), False), "verbose": ((bool,), False),
}


class ConfigError(Exception):
    pass


def load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    for key, (types, required) in KEYS.items():
        if key not in cfg:
            if required:
                raise ConfigError(f"{path}: missing key {key!r}")
            continue
        v = cfg[key]
        # bool is an int in Python: refuse `batch = true`.
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise ConfigError(f"{path}: {key} = {v!r} should be {' or '.join(t.__name__ for t in types)}")
    boards = cfg["boards"]
    if not boards or not all(isinstance(b, str) and b for b in boards):
        raise ConfigError(f"{path}: boards must be a non-empty list of \"HOST:PORT\" strings")
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in cfg.get("pass_bins", [])):
        raise ConfigError(f"{path}: pass_bins must be a list of integers")
    return cfg


def _common(cfg: dict) -> list[str]:
    out = []
    if "key_file" in cfg:
        out += ["--key-file", cfg["key_file"]]
    for key in ("timeout", "retries"):
        if key in cfg:
            out += [f"--{key}", str(cfg[key])]
    if cfg.get("verbose"):
        out.append("-v")
    return out


def watch_argv(cfg: dict) -> list[str]:
    # watch balances several boards and fails over between them, as classify does.
    argv = ["watch", cfg["inbox"]]
    for b in cfg["boards"]:
        argv += ["--board", b]
    argv += ["--model", cfg["model"], "--no-progress", *_common(cfg)]
    if "db" in cfg:
        argv += ["--db", cfg["db"]]
    for key in ("batch", "poll_interval"):
        if key in cfg:
            argv += ["--" + key.replace("_", "-"), str(cfg[key])]
    if "pass_bins" in cfg:
        argv += ["--pass-bins", ",".join(map(str, cfg["pass_bins"]))]
    return argv


def status_argvs(cfg: dict) -> list[list[str]]:
    return [["status", "--board", b, "--model", cfg["model"], *_common(cfg)] for b in cfg["boards"]]


class JournalFormatter(logging.Formatter):
    """`<prio>logger: message`: journald (SyslogLevelPrefix=yes, the default) strips the
    prefix and stores the priority, so `journalctl -p warning` finds the warnings."""
    PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}

    def format(self, record):
        prio = self.PRIO.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def setup_logging(verbose: bool) -> None:
    if not os.environ.get("JOURNAL_STREAM"):
        return   # not under systemd: the host CLI's own stderr format
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(h)   # the CLI's logging.basicConfig then leaves it alone
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="waferq-host-service", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.environ.get("WQ_HOST_CONFIG", DEFAULT_CONFIG))
    ap.add_argument("command", choices=("watch", "status", "argv"))
    args = ap.parse_args(argv)
    try:
        cfg = load(args.config)
        argvs = [watch_argv(cfg)] if args.command == "watch" else status_argvs(cfg)
        if args.command == "argv":
            argvs = [watch_argv(cfg), *status_argvs(cfg)]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "argv":
        for a in argvs:
            print(" ".join(a))
        return 0
    setup_logging(cfg.get("verbose", False))
    from host_stm32mp1 import cli

    worst = 0
    for a in argvs:   # status: every board, exit with the worst
        worst = max(worst, cli.main(a))
    return worst


if __name__ == "__main__":
    sys.exit(main())
