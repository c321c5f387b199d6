"""Threads (the GIL is released while relprop computes; one Model from
several threads is safe) and reference counting / memory over 1000 calls."""
import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import relprop
from conftest import DEMO_MODEL, ORACLE, SAMPLES, VARIANTS

IMAGES = ["coat_tshirt.png", "dress_sandal.png", "sneaker_bag.png", "ankleboot_trouser.png"]
METHODS = ["transformer_attribution", "rollout", "lrp_full"]


def explain_all(m, xs):
    return [m.explain(x, top_classes=2, methods=METHODS) for x in xs]


def same(a, b):
    return all(np.array_equal(a.classes, b.classes) and
               all(a.maps[k].tobytes() == b.maps[k].tobytes() for k in a.maps) for a, b in zip(a, b))


def close(a, b, limit=1e-5):
    """Equal classes and maps within `limit` of their largest magnitude. Two
    models computing at once share relprop's one thread pool: whichever
    call finds it busy does its products on its own thread, unsplit, and
    OpenBLAS's AVX2 kernels may then round a panel's edge differently
    (README, Speed) -- the last bits, never more."""
    return all(np.array_equal(a.classes, b.classes) and
               all(np.abs(a.maps[k] - b.maps[k]).max() <= limit * np.abs(b.maps[k]).max() for k in a.maps)
               for a, b in zip(a, b))


def test_one_model_many_threads():
    """Four threads on one Model: its per-model lock runs the calls one
    after the other, and every thread gets what it gets alone, bit for bit
    (one call at a time has the thread pool to itself, as alone)."""
    m = relprop.Model(DEMO_MODEL)
    xs = [m.load_image(os.path.join(SAMPLES, f)) for f in IMAGES]
    want = explain_all(m, xs)
    got, errors = {}, []

    def work(i):
        try:
            order = xs[i:] + xs[:i]
            for _ in range(5):
                r = explain_all(m, order)
                got.setdefault(i, []).append(r[len(xs) - i:] + r[:len(xs) - i])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        for r in got[i]:
            assert same(r, want), f"thread {i}: differs from the sequential run"


def test_two_models_two_threads():
    case = os.path.join(ORACLE, "fmnist_vit_s__timm17")
    ma, mb = relprop.Model(DEMO_MODEL), relprop.Model(os.path.join(case, "model.onnx"))
    xa = [ma.load_image(os.path.join(SAMPLES, f)) for f in IMAGES]
    xb = [np.load(os.path.join(case, "inputs", f"input_{k}.npy")) for k in range(3)]
    want = {"a": explain_all(ma, xa), "b": explain_all(mb, xb)}
    got, errors = {"a": [], "b": []}, []

    def work(key, m, xs):
        try:
            for _ in range(5):
                got[key].append(explain_all(m, xs))
        except Exception as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=("a", ma, xa)), threading.Thread(target=work, args=("b", mb, xb))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for key in got:
        assert len(got[key]) == 5 and all(close(r, want[key]) for r in got[key])


def test_gil_released():
    """One explain call (a single call into C: ten classes, every method)
    runs in a thread; this thread sleeps 50 ms and wakes while that call is
    still going, which it could not do if the call held the GIL (it would
    wake only once the call had returned and flagged it)."""
    m = relprop.Model(DEMO_MODEL)
    x = m.load_image(os.path.join(SAMPLES, "coat_tshirt.png"))
    t0 = time.perf_counter()
    m.explain(x, classes=list(range(10)), methods="all")
    call = time.perf_counter() - t0
    started, finished = threading.Event(), threading.Event()

    def work():
        started.set()
        m.explain(x, classes=list(range(10)), methods="all")
        finished.set()

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    time.sleep(0.05)
    awake_during_call = not finished.is_set()
    t.join()
    print(f"one call {call * 1e3:.0f} ms; this thread woke during it: {awake_during_call}")
    assert call > 0.1, "the call is too short to tell"
    assert awake_during_call


def heap_in_use():
    """Bytes in use in glibc's malloc heap, all arenas (mallinfo2), or None."""
    try:
        libc = ctypes.CDLL(None)
        f = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    f.restype = Mallinfo2
    info = f()
    return info.uordblks + info.hblkhd


def calls(m, x, classes):
    """One round of every entry point, the failing ones included."""
    e = m.explain(x, classes=classes, methods=["transformer_attribution", "lrp_full"])
    m.run(x)
    relprop.overlay(x[1], e.map(row=1))
    m.inspect()
    try:
        m.explain(x, classes=99)
    except relprop.Error:
        pass
    try:
        m.run(x.astype(np.float64))
    except TypeError:
        pass
    return e


def test_no_leaks_over_1000_calls():
    # A small symbolic-batch model with two rows, so the batched copy is exercised too.
    m = relprop.Model(os.path.join(VARIANTS, "dynamic_batch_op17", "model.onnx"))
    x = np.load(os.path.join(VARIANTS, "dynamic_batch_op17", "input_batch2.npy"))
    classes = [4, 0]
    for _ in range(30):  # warm-up: plans, pools, numpy's caches
        calls(m, x, classes)
    gc.collect()
    refs = (sys.getrefcount(m), sys.getrefcount(x), sys.getrefcount(classes), sys.getrefcount(relprop.Error))
    # The C heap in eight windows of 125 rounds. CPython, glibc and the
    # libraries loaded grow some tables once in a while (one step of up to
    # ~1 MiB, in one window); a leak grows every window, so the median
    # window must not grow.
    heap = [heap_in_use()]
    for _ in range(8):
        for _ in range(125):
            calls(m, x, classes)
        gc.collect()
        heap.append(heap_in_use())
    assert (sys.getrefcount(m), sys.getrefcount(x), sys.getrefcount(classes), sys.getrefcount(relprop.Error)) == refs
    if heap[0] is None:
        print("mallinfo2 is not available: the C heap is not measured here (valgrind and ASan runs cover it)")
    else:
        steps = [b - a for a, b in zip(heap, heap[1:])]
        print("C heap growth per window of 125 rounds:", steps)
    # Python's allocations (numpy's arrays included) in four windows of 250
    # rounds, the same way: the median window must not grow.
    tracemalloc.start()
    for _ in range(20):
        calls(m, x, classes)
    gc.collect()
    traced = [tracemalloc.get_traced_memory()[0]]
    snap0 = tracemalloc.take_snapshot()
    for _ in range(4):
        for _ in range(250):
            calls(m, x, classes)
        gc.collect()
        traced.append(tracemalloc.get_traced_memory()[0])
    growth = tracemalloc.take_snapshot().compare_to(snap0, "traceback")
    tracemalloc.stop()
    tsteps = [b - a for a, b in zip(traced, traced[1:])]
    print("Python allocations traced, growth per window of 250 rounds:", tsteps)
    for stat in growth[:3]:  # where any growth comes from
        print(stat)
        for line in stat.traceback.format()[-6:]:
            print("   ", line)
    assert sorted(tsteps)[len(tsteps) // 2] < 8000  # 32 bytes a round
    if heap[0] is not None:
        # a leak of 32 bytes per round grows every window by 4000 (an explanation is ~20 KiB)
        assert sorted(steps)[len(steps) // 2] < 4000
