"""Talking to systemd: readiness, watchdog and status notifications, and journald logs.

The notify protocol is one datagram per message to the unix socket named in
``$NOTIFY_SOCKET`` (``@`` starts an abstract socket name). Without that variable, as
when run by hand, every call does nothing. ``$WATCHDOG_USEC`` (set when the unit has
``WatchdogSec=``) says how often systemd wants ``WATCHDOG=1``.

Logs go to stderr. Under systemd (``$JOURNAL_STREAM`` names stderr's device and inode)
each line starts with its syslog priority (``<3>`` error, ``<4>`` warning, ...) so the
journal records the right level; on a terminal lines carry a readable level instead.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping

_log = logging.getLogger(__name__)

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class Notifier:
    """Sends ``sd_notify`` messages; silent when not started by systemd.

    A send never blocks: it runs on the event loop, and a reader that stalls (systemd
    busy, or a notify socket nobody reads) lets the kernel's queue for the socket
    (``net.unix.max_dgram_qlen``, 10 datagrams by default) fill with ten status lines
    and watchdog pings, after which a blocking send would wait for the reader. A
    message that finds the queue full is dropped and counted in ``dropped``; the first
    drop after a delivered message is logged, the rest of that run are not.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        wanted = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        #: Seconds between the watchdog pings systemd expects, or None without a watchdog.
        self.watchdog_interval = int(usec) / 1e6 if wanted else None
        #: Messages dropped because systemd's queue was full.
        self.dropped = 0
        self._dropping = False

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return bool(self._address)

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` fields in one datagram, without blocking; errors are logged, never raised."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.connect(self._address)
                sock.send("\n".join(fields).encode())
        except BlockingIOError:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _log.warning(
                    "systemd is not reading its notify socket (queue full): dropping notifications"
                    " until it does (%d dropped so far)",
                    self.dropped,
                )
            return
        except OSError as exc:
            _log.warning("cannot notify systemd: %s", exc)
            return
        if self._dropping:
            self._dropping = False
            _log.info("systemd reads its notify socket again (%d notifications dropped)", self.dropped)

    def ready(self, status: str) -> None:
        """The gate is up: manifest, ledger and inputs."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        """A one-line status for ``systemctl status``."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """The scan loop is alive."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.send("STOPPING=1", "STATUS=stopping")


class JournalFormatter(logging.Formatter):
    """``<4>manifest refused ...``: the priority prefix journald reads."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's message with its priority in front."""
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def under_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is connected to the journal (``$JOURNAL_STREAM`` matches it)."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not device or not inode:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


def setup_logging(level: int = logging.INFO, environ: Mapping[str, str] | None = None) -> None:
    """Log to stderr, for the journal or for a person."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journal(environ):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: the upstream client's calls are counted and shown
    # in status instead, and failures are logged once per change by the sync loops.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
    # Libraries warn through ``warnings`` (gpiozero's pin factory fallbacks): log them, so
    # they reach the journal at warning priority.
    logging.captureWarnings(True)
