"""The README's library example, run exactly as written there (extracted from README.md, so the two cannot drift)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ```python block of the README's "## Python library" section."""
    text = README.read_text()
    section = text.split("\n## Python library\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python block in the README's Python library section"
    return match.group(1)


def test_the_readme_library_example_trains_the_handed_in_module(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 14  # "~10 lines"
    monkeypatch.chdir(tmp_path)  # its run_dir is relative
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    trainer, metrics, net = namespace["trainer"], namespace["metrics"], namespace["net"]
    assert trainer.model.module is net  # the plain module was wrapped, not replaced
    from auglabel.augment import AugMix
    from auglabel.labels import AutoLabel

    assert isinstance(trainer.step.augment, AugMix) and isinstance(trainer.label_strategy, AutoLabel)
    assert len(trainer.label_strategy.history) == 1  # its end-of-epoch update ran (1 epoch)
    run = tmp_path / "runs" / "library"
    assert (run / "metrics.json").is_file() and (run / "autolabel.csv").is_file()
    assert 0 <= metrics["ece"] <= 1 and metrics["accuracy"] > 0.1
    assert f"test accuracy {metrics['accuracy']:.3f}" in capsys.readouterr().out
