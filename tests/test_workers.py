"""run_task: a task that fails in a worker ends as the dock's one message, never a re-raise."""


import pytest

from napari_lowdose.widgets._workers import run_task

pytestmark = pytest.mark.gui  # a Qt application and its thread pool


def _frames(n):
    yield from range(n)
    # A RuntimeError, as torch's out-of-memory errors: superqt's generator worker
    # alone would take it for a deleted worker and emit neither errored nor finished.
    raise RuntimeError("out of memory\nlong traceback")


def _compute(x):
    raise RuntimeError(f"no {x}")




@pytest.mark.parametrize("use_thread", [True, False])
@pytest.mark.parametrize("kind", ["generator", "generator function", "function"])
def test_a_failing_task_gives_one_message_and_is_not_raised(qtbot, caught, kind, use_thread):
    messages, items, finished = [], [], []
    task, args = {
        "generator": (_frames(2), ()),
        "generator function": (_frames, (2,)),
        "function": (_compute, ("model",)),
    }[kind]
    worker = run_task(task, *args, use_thread=use_thread, on_yield=items.append,
                      on_error=lambda err: messages.append(f"Segment failed: {err}"),
                      on_finish=lambda: finished.append(True))
    assert (worker is not None) == use_thread
    qtbot.waitUntil(lambda: bool(finished), timeout=10000)
    qtbot.wait(50)  # anything queued after "finished" would arrive now
    assert len(messages) == 1 and messages[0].startswith("Segment failed: ")
    assert items == ([] if kind == "function" else [0, 1])
    assert finished == [True]
    assert caught == {"notifications": [], "excepthook": []}


def test_a_task_that_succeeds_returns_its_value(qtbot, caught):
    returned, errors = [], []
    run_task(lambda x: 2 * x, 21, on_return=returned.append, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(returned), timeout=10000)
    assert returned == [42] and errors == []
    assert caught == {"notifications": [], "excepthook": []}


def test_napari_thread_worker_would_raise_the_error_again(qtbot, caught):
    """Why run_task does not use napari's thread_worker: connecting ``errored`` after
    creating the worker does not remove the re-raise handler superqt attaches; the
    error goes to sys.excepthook (outside napari's event loop PyQt then aborts)."""
    from napari.qt.threading import thread_worker

    def frames(n):
        yield from range(n)
        raise ValueError("bad frame")

    messages = []
    worker = thread_worker(frames, start_thread=False)(1)
    worker.errored.connect(messages.append)
    worker.start()
    qtbot.waitUntil(lambda: bool(caught["excepthook"]), timeout=10000)
    assert len(messages) == 1
    assert isinstance(caught["excepthook"][0][1], ValueError)
