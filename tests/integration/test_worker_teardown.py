"""A worker's teardown does not hang on its pub/sub thread: rq unsubscribed, then stopped the
thread; when the thread read the unsubscribe reply first, it waited 60 s for a subscription
that never came, and redis-py 8's ``stop()`` waited with it. Under load that was a burst
worker taking a minute to return, now and then (bot.background.worker.PromptUnsubscribe)."""

from __future__ import annotations

import json
import threading
import time

import redis
from rq import SimpleWorker

from bot.background.worker import BurstWorker, InProcessWorker
from bot.core import queue


def thread_reads_the_reply_first(worker) -> None:
    """Make the race certain: the unsubscribe returns only once the pub/sub thread has read
    its reply (the worker is no longer subscribed)."""
    send = worker.pubsub.unsubscribe

    def unsubscribe(*args):
        send(*args)
        deadline = time.monotonic() + 5
        while worker.pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not worker.pubsub.subscribed

    worker.pubsub.unsubscribe = unsubscribe


def ends(worker_class, settings, within: float = 10.0) -> bool:
    """Does the worker's unsubscribe return (well within rq's 60 s read), its thread ended?"""
    worker = worker_class(queue.all_queues(settings), connection=queue.get_redis(settings))
    worker.subscribe()
    thread_reads_the_reply_first(worker)
    done = threading.Thread(target=worker.unsubscribe, daemon=True)
    done.start()
    done.join(timeout=within)
    return not done.is_alive() and not worker.pubsub_thread.is_alive()


def test_our_workers_unsubscribe_at_once_when_their_thread_reads_the_reply_first(clean):
    assert ends(BurstWorker, clean)
    assert ends(InProcessWorker, clean)


def test_a_worker_whose_thread_ends_during_the_unsubscribe_tears_down_quietly(clean):
    """Between the stop and the unsubscribe the thread can read a message, see the stop, end
    and close its connection: the unsubscribe then fails on the closed socket (seen once on
    CI as a broken pipe), and the teardown must go on."""
    worker = BurstWorker(queue.all_queues(clean), connection=queue.get_redis(clean))
    worker.subscribe()
    thread = worker.pubsub_thread

    def unsubscribe_on_a_closed_socket(*args):
        payload = json.dumps({"command": "none"})  # a command rq ignores: it wakes the read
        worker.connection.publish(worker.pubsub_channel_name, payload)
        thread.join(timeout=5)
        assert not thread.is_alive()  # it saw the stop and closed the connection
        raise redis.exceptions.ConnectionError("Error 32 while writing to socket. Broken pipe.")

    worker.pubsub.unsubscribe = unsubscribe_on_a_closed_socket
    worker.unsubscribe()  # nothing raised
    assert not thread.is_alive()


def test_rqs_own_order_is_what_hung(clean):
    """The case above is the one that hangs rq's SimpleWorker with this redis-py: when a newer
    rq or redis-py fixes it, this fails, and PromptUnsubscribe can go."""
    import pytest

    if int(redis.__version__.split(".")[0]) < 8:
        pytest.skip("older redis-py's stop() does not wait for the thread")
    assert not ends(SimpleWorker, clean, within=2.0)  # its thread waits out 60 s
