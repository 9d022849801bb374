"""``auglabel reproduce PAPER``: one resumable command per paper that trains every config of the
paper's tables over seeds in the test bed, evaluates them and writes mean ± std tables and plots.

Modules: :mod:`.papers` (the registry: papers, their groups of (config stem, row label) and the
extra suites each group needs), :mod:`.plan` (settings, jobs, which steps are already done),
:mod:`.runner` (the subprocesses, ``--jobs`` at a time, progress and ETA), :mod:`.ood` (OOD
AUROC after temperature scaling), :mod:`.tables` (mean ± std cells, group / OOD / AutoLabel
tables), :mod:`.plots`, :mod:`.report` (the results folder), :mod:`.pipeline` (all of it in
order) and :mod:`.command` (the command line).
"""
from .papers import PAPERS, Group, Paper, get_paper
from .pipeline import reproduce
from .plan import Settings
from .tables import mean_std_cell

__all__ = ["PAPERS", "Group", "Paper", "Settings", "get_paper", "mean_std_cell", "reproduce"]
