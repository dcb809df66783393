"""A job another thread can stop at its next Python instruction: the app's diagnosis."""

import threading

from gradstep.tui.stoppable_job import StoppableJob


def _in_thread(stoppable: StoppableJob, job) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(stoppable.run(job, lambda: "stopped")))
    thread.start()
    return thread, out


def test_a_job_that_never_returns_is_stopped_and_its_thread_goes_on():
    stoppable, started = StoppableJob(), threading.Event()

    def endless():
        started.set()
        while True:
            sum(range(100))

    stoppable.arm()
    thread, out = _in_thread(stoppable, endless)
    assert started.wait(5)
    stoppable.stop()
    thread.join(5)
    assert not thread.is_alive() and out == ["stopped"]


def test_a_stop_asked_before_the_job_starts_skips_it_and_one_after_it_ends_does_nothing():
    stoppable, ran = StoppableJob(), []
    stoppable.arm()
    stoppable.stop()
    thread, out = _in_thread(stoppable, lambda: ran.append(1))
    thread.join(5)
    assert out == ["stopped"] and not ran
    # A stop asked after the job returned, while its thread goes on with other work: nothing lands there.
    stoppable.arm()
    returned, asked, after = threading.Event(), threading.Event(), []

    def worker():
        after.append(stoppable.run(lambda: "done", lambda: "stopped"))
        returned.set()
        asked.wait(5)
        try:
            after.append(sum(range(100000)))
        except BaseException as error:
            after.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    assert returned.wait(5)
    stoppable.stop()
    asked.set()
    thread.join(5)
    assert after == ["done", sum(range(100000))]
