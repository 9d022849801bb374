"""Deprecated: use ``auglabel reproduce autolabel`` (this script only forwards to it).

    python scripts/reproduce_autolabel.py [options]   ==   auglabel reproduce autolabel [options]

The reproduction of the AutoLabel paper's Tables 2-4 now lives in :mod:`auglabel.reproduce`: it
trains the test-bed configs (``configs/testbed/``, shared with the other papers' reproductions)
into ``runs/testbed`` and writes ``table.md``, ``results.json`` and the plots into ``--out``, a
folder (default ``runs/testbed/results/autolabel``).  The options (``--seeds``, ``--runs``,
``--subsample``, ``--adv_subsample``, ``--jobs``, ``--threads``, ``--groups``, ``--override``,
``--fresh``) keep their meaning; see ``auglabel reproduce --help``.
"""
from __future__ import annotations

import sys

from auglabel.cli import main

if __name__ == "__main__":
    print("scripts/reproduce_autolabel.py is deprecated; running: auglabel reproduce autolabel "
          + " ".join(sys.argv[1:]), file=sys.stderr, flush=True)
    sys.exit(main(["reproduce", "autolabel", *sys.argv[1:]]))
