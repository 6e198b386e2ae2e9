"""gunicorn settings as deployed (`gunicorn -c python:bot.gunicorn_conf 'bot.app:create_app()'`).

HOST / PORT / WEB_CONCURRENCY / WEB_THREADS (platform conventions), YUCHI_ACCESS_LOG and
YUCHI_LOG_LEVEL are rows of the settings table (bot/core/config.py), read like every other.
"""

import gc

from bot.core import redact
from bot.core.config import load_settings

_settings = load_settings()
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread" if threads > 1 else "sync"
# WeChat gives up after 5 s and retries; a worker stuck longer than this is recycled.
timeout = 30
graceful_timeout = 10
keepalive = 5
# Load the app (and jieba's dictionary) once in the master; engines and Redis connections are
# made lazily per process, so forked workers never share a connection.
preload_app = True
accesslog = _settings.access_log or None
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn >= 24 opens a control socket at one shared path per user (~/.gunicorn); several
# instances on one machine (web, tests, benchmarks) would fight over it. We do not use it.
control_socket_disable = True

# Every log line of the master and its workers, the access log's request line and referrer
# included, masks signatures, echostr, OAuth codes, tokens and secrets (bot/core/redact.py).
redact.install()


def pre_fork(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """The app is loaded once in the master (``preload_app``): move every object it made to
    the permanent generation before a worker is forked, so the worker's garbage collections
    do not walk them (and do not copy their memory pages by touching them)."""
    gc.freeze()
