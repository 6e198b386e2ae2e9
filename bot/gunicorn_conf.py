"""gunicorn settings as deployed (`gunicorn -c python:bot.gunicorn_conf 'bot.app:create_app()'`).

PORT / HOST / WEB_CONCURRENCY / WEB_THREADS come from the environment (platform conventions).
"""

import multiprocessing
import os

from bot.core import redact

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("WEB_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
# WeChat gives up after 5 s and retries; a worker stuck longer than this is recycled.
timeout = 30
graceful_timeout = 10
keepalive = 5
# Load the app (and jieba's dictionary) once in the master; engines and Redis connections are
# made lazily per process, so forked workers never share a connection.
preload_app = True
accesslog = os.environ.get("YUCHI_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("YUCHI_LOG_LEVEL", "info").lower()
# gunicorn >= 24 opens a control socket at one shared path per user (~/.gunicorn); several
# instances on one machine (web, tests, benchmarks) would fight over it. We do not use it.
control_socket_disable = True

# Every log line of the master and its workers, the access log's request line and referrer
# included, masks signatures, echostr, OAuth codes, tokens and secrets (bot/core/redact.py).
redact.install()
