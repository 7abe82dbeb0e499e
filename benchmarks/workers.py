"""Jobs in worker processes: the one pool the benchmarks share (compare_methods' final runs, small_data's cells).

    parent                                    workers (spawned: CUDA cannot be forked)
    todo ─▶ ready(todo, running) ─▶ submit ─▶ start(*args) once: data and encoder loaded
                                              work(job) ─▶ a part file of its own
    done(job, future) ◀── each as it ends ◀───┘
    (the parent alone merges parts into the results: no two processes write one file)

A GPU holds many small runs at once, so a job is one method (one seed, one cell), not a whole benchmark.
"""
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait


def first(todo: list, running: list):
    """The default `ready`: the next job in order, whatever is running."""
    return todo[0]


def in_workers(todo, workers: int, start, args: tuple, work, done, ready=first) -> None:
    """Run work(job) for every job of `todo` in `workers` processes, each set up once by start(*args); at most
    `workers` at a time, the next one being ready(todo, running) (None: wait for a running job to end). done(job,
    future) runs in this process as each job ends; future.result() is what work returned, or raises its error."""
    todo, running = list(todo), {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=start, initargs=args) as pool:
        while todo or running:
            while len(running) < workers and todo and (job := ready(todo, list(running.values()))) is not None:
                todo.remove(job)
                running[pool.submit(work, job)] = job
            if not running:
                raise RuntimeError(f"no job can start: {todo[0]} waits for a job that is not in the plan")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done(running.pop(future), future)
