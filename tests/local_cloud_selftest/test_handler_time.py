"""Handler time: sleeps count in full, time spent awake counts 1/k (load-proof timeouts)."""

from __future__ import annotations

import threading
import time

from saga_kit.local_cloud.handler_time import HandlerTime


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_sleeping_handler_takes_as_long_as_it_sleeps() -> None:
    clock = HandlerTime(dilation=20)
    with clock.installed():
        watch = clock.stopwatch()
        time.sleep(0.3)
        assert 0.3 <= watch.elapsed() < 0.35


def test_a_starved_or_busy_handler_counts_a_twentieth() -> None:
    clock = HandlerTime(dilation=20)
    with clock.installed():
        watch = clock.stopwatch()
        _busy(0.4)  # what a handler waiting for the CPU on a loaded machine looks like here
        assert watch.elapsed() < 0.4 / 20 + 0.01


def test_another_threads_sleep_is_not_this_handlers() -> None:
    clock = HandlerTime(dilation=20)
    with clock.installed():
        watch = clock.stopwatch()
        other = threading.Thread(target=time.sleep, args=(0.3,))
        other.start()
        other.join()
        assert watch.elapsed() < 0.3 / 20 + 0.01
        assert clock.slept(other.ident) >= 0.3


def test_dilation_one_is_wall_time_and_the_real_sleep_comes_back() -> None:
    real_sleep = time.sleep
    clock = HandlerTime(dilation=1)
    with clock.installed():
        assert time.sleep is not real_sleep
        watch = clock.stopwatch()
        _busy(0.2)
        assert watch.elapsed() >= 0.2
    assert time.sleep is real_sleep
