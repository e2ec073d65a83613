"""How the autograder runs a check cell: in the state a fresh notebook would give it.

A learner who leaves ``torch.set_grad_enabled(False)`` on, switches the default dtype to float64, sets a
default device or seeds the random generators differently has not written a wrong answer. The grader wraps
every check cell in `graded`, which gives the check (and the learner's code it calls) gradients on, no
inference mode, float32 by default, no default device, deterministic algorithms off and random generators
seeded from the check's name, and gives the notebook's own state back afterwards. It touches torch and
numpy only when the notebook has imported them.
"""

from __future__ import annotations

import contextlib
import random
import sys
import zlib
from collections.abc import Iterator


@contextlib.contextmanager
def graded(name: str) -> Iterator[None]:
    """Run the block as a fresh notebook would; restore the notebook's state afterwards."""
    seed = zlib.crc32(name.encode())
    python_state = random.getstate()
    np = sys.modules.get("numpy")
    numpy_state = np.random.get_state() if np is not None else None
    torch = sys.modules.get("torch")
    with contextlib.ExitStack() as stack:
        if torch is not None:
            stack.enter_context(_torch_defaults(torch, seed))
        random.seed(seed)
        if np is not None:
            np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            if np is not None:
                np.random.set_state(numpy_state)


@contextlib.contextmanager
def _torch_defaults(torch, seed: int):
    dtype = torch.get_default_dtype()
    get_device = getattr(torch, "get_default_device", None)
    device = get_device() if get_device is not None else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.set_default_dtype(torch.float32)
            if device is not None:
                torch.set_default_device(None)  # tensors on the CPU unless a device is given
            if deterministic:  # the call imports torch._inductor (about 1 s): only when needed
                torch.use_deterministic_algorithms(False)
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_default_dtype(dtype)
        if device is not None:
            torch.set_default_device(None if device.type == "cpu" else device)
        if deterministic or torch.are_deterministic_algorithms_enabled():  # as it was before the check
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
