"""Runs ``auglabel train`` (the CLI) with one injected fault, for tests/test_faults.py.

    python tests/fault_helper.py KIND STEP RANK -- <auglabel train arguments>

KIND is ``sigterm`` (the process sends itself SIGTERM while training step STEP runs), ``exit`` (``os._exit(1)``
at that step: a crashed process), ``hang`` (sleeps there for a minute: a stuck process) or ``none``.  Only
the process whose ``RANK`` environment variable equals RANK (0 without torchrun) is faulted.  The fault
lives here, in the test, not in the library: :func:`inject` wraps :meth:`TrainingStep.forward`.
"""
import os
import signal
import sys
import time

import torch


def inject(kind: str, step: int, rank: int) -> None:
    from auglabel.engine.step import TrainingStep

    original = TrainingStep.forward

    def forward(self, batch, generator):
        if self.training and self.steps_done + 1 == step and int(os.environ.get("RANK", "0")) == rank:
            if kind == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            elif kind == "exit":
                os._exit(1)
            elif kind == "hang":
                time.sleep(60)
        return original(self, batch, generator)

    TrainingStep.forward = forward


def main() -> int:
    kind, step, rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    from auglabel.cli import main as cli_main

    inject(kind, step, rank)
    return cli_main(["train", *sys.argv[sys.argv.index("--") + 1:]])


if __name__ == "__main__":
    sys.exit(main())
