"""Torch threading that survives spaCy's `nlp.pipe(texts, n_process=k)`.

spaCy starts its worker processes with `fork` on Linux. PyTorch's CPU build
runs its intra-op parallelism on an OpenMP (libgomp) thread pool, and that pool
does not survive a fork: once the parent has run one multi-threaded torch op
(any `nlp()` call at the default thread count does), the first parallel op in
a forked child waits forever for pool threads that were not copied. The workers
then sit at 0% CPU and the parent blocks reading from them (spaCy issues #6662
and #7470).

Importing `spacy_spandec` (which `spacy.load` does through the entry points)
therefore registers a fork hook: a forked child runs torch on one intra-op
thread, as PyTorch's own DataLoader workers do. `n_process=k` then uses k cores,
one per worker; the parent keeps its own thread count. A child started with
`spawn` or `forkserver` is a fresh interpreter and is not affected.
"""

import os

import torch

_installed = False


def _one_thread_in_forked_child() -> None:
    # Only sets OpenMP's/MKL's thread count: safe right after fork, before
    # any parallel region of the child.
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def install_fork_hook() -> None:
    """Register the hook once per process (idempotent)."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_one_thread_in_forked_child)
        _installed = True
