"""A config cannot run code: ``model.params.class_path`` is checked before anything is imported or
called (issue 13, item 1).  Every refusal is one ``auglabel: error:`` line with exit status 2, the
command it names has not run (a sentinel file it would create stays absent) and no run directory
exists; only the user (``--allow_module``, AUGLABEL_ALLOW_MODULES, ``allow_modules``) widens the list."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from auglabel.cli import main
from auglabel.engine.config import ComponentConfig, DataConfig, ExperimentConfig, TrainConfig
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError
from auglabel.models import build_model
from auglabel.models.custom import (ALLOW_MODULES_ENV, DEFAULT_ALLOWED_MODULES, allow_modules, allowed_modules,
                                    resolve_class)

TESTS = Path(__file__).resolve().parent
DATA = ["--data.name", "digits", "--data.val_size", "0.2", "--train.epochs", "1", "--train.batch_size", "128",
        "--train.device", "cpu"]


@pytest.fixture(autouse=True)
def _no_env_allow_list(monkeypatch):
    monkeypatch.delenv(ALLOW_MODULES_ENV, raising=False)


def _train_argv(tmp_path, class_path, init_args=None, *extra):
    argv = ["train", *DATA, "--model.name", "custom", "--model.params.class_path", class_path,
            "--run_dir", str(tmp_path / "run")]
    if init_args is not None:
        argv += ["--model.params.init_args", yaml.safe_dump(init_args, default_flow_style=True).strip()]
    return argv + list(extra)


def _refused(capsys, tmp_path, argv, fragment):
    """main(argv) fails with one line naming ``fragment``; nothing ran, no run directory."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auglabel: error: ") and len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert not (tmp_path / "pwned").exists(), "the refused command ran"
    assert not (tmp_path / "run").exists(), "a run directory was made for a refused config"
    return err


def _pwned(tmp_path):
    return str(tmp_path / "pwned")


def _payloads(tmp_path):
    """class_path -> init_args that would create tmp_path/pwned if they were ever called."""
    return {
        "os.system": {"command": f"touch {_pwned(tmp_path)}"},
        "builtins.eval": {"source": f"open({_pwned(tmp_path)!r}, 'w')"},
        "subprocess.Popen": {"args": ["touch", _pwned(tmp_path)]},
        "security_helper.make_and_touch": {"path": _pwned(tmp_path)},
    }


# ---------------------------------------------------------------- the command, end to end

def test_the_reported_command_runs_nothing(tmp_path):
    command = [sys.executable, "-m", "auglabel.cli", "train", *DATA, "--model.name", "custom",
               "--model.params.class_path", "os.system",
               "--model.params.init_args", f'{{command: "touch {_pwned(tmp_path)}"}}', "--run_dir", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert err.startswith("auglabel: error: custom model: module 'os'") and len(err.splitlines()) == 1, err
    assert "is not allowed" in err and "--allow_module os" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- refused by the default allow-list

@pytest.mark.parametrize("class_path", ["os.system", "builtins.eval", "subprocess.Popen",
                                        "security_helper.make_and_touch"])
def test_modules_outside_the_allow_list_are_refused_before_import(tmp_path, capsys, class_path):
    module = class_path.rpartition(".")[0]
    _refused(capsys, tmp_path, _train_argv(tmp_path, class_path, _payloads(tmp_path)[class_path]),
             f"module {module!r} of class_path {class_path!r} is not allowed")


@pytest.mark.parametrize("class_path,fragment", [
    ("math.pi", "module 'math' of class_path 'math.pi' is not allowed"),
    ("torch.Tensor", "module 'torch' of class_path 'torch.Tensor' is not allowed"),  # torch itself is not torch.nn
    ("torchaudio.models.Wav2Letter", "module 'torchaudio.models' of class_path"),
    ("torch.nnx.Linear", "module 'torch.nnx'"),  # a prefix matches whole components only
    ("auglabel_evil.Net", "module 'auglabel_evil'"),
])
def test_other_prefixes_are_refused(tmp_path, capsys, class_path, fragment):
    _refused(capsys, tmp_path, _train_argv(tmp_path, class_path), fragment)


def test_a_refused_module_is_never_imported(tmp_path, capsys, monkeypatch):
    """Importing runs a module's top level, so the prefix is checked first."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "import_side_effect_mod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from torch import nn
        Path({_pwned(tmp_path)!r}).touch()
        class Net(nn.Module):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    _refused(capsys, tmp_path, _train_argv(tmp_path, "import_side_effect_mod.Net"), "is not allowed")
    assert "import_side_effect_mod" not in sys.modules
    with pytest.raises(ConfigError, match="is not allowed"):  # the file form too
        resolve_class(f"{tmp_path}/lib/import_side_effect_mod.py:Net")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- refused even from an allowed module

@pytest.mark.parametrize("class_path,fragment", [
    ("os.system", "'os.system' is a function, not a class"),
    ("builtins.eval", "'builtins.eval' is a function, not a class"),
    ("subprocess.Popen", "'subprocess.Popen' is a class but not a torch.nn.Module subclass"),
    ("security_helper.make_and_touch", "'security_helper.make_and_touch' is a function, not a class"),
    ("math.pi", "'math.pi' is an object of type float, not a class"),
    ("security_helper.NOT_A_CLASS", "is an object of type float, not a class"),
])
def test_what_is_not_an_nn_module_class_is_refused_even_when_allowed(tmp_path, capsys, class_path, fragment):
    """A user who allowed os, subprocess, builtins and math still cannot be made to call them."""
    argv = _train_argv(tmp_path, class_path, _payloads(tmp_path).get(class_path),
                       "--allow_module", "os", "--allow_module", "subprocess,builtins,math", "--allow_module",
                       "security_helper")
    _refused(capsys, tmp_path, argv, fragment)


@pytest.mark.parametrize("class_path,fragment", [
    ("torch.nn.functional.relu", "is a function, not a class"),
    ("torch.nn.init.kaiming_normal_", "is a function, not a class"),
    ("torch.nn.Parameter", "is a class but not a torch.nn.Module subclass"),
    ("torch.nn.modules.module.OrderedDict", "is a class but not a torch.nn.Module subclass"),
    ("torch.nn.modules.module.torch", "is a module, not a class"),
    ("torch.nn.parallel.distributed.os", "is a module, not a class"),
    # attribute chains: the module part must import as a module, no getattr walk through 'os'
    ("torch.nn.parallel.distributed.os.system", "cannot import module 'torch.nn.parallel.distributed.os'"),
    ("auglabel.models.custom.os.system", "cannot import module 'auglabel.models.custom.os'"),
    ("torch.nn.modules.module.os.system", "cannot import module 'torch.nn.modules.module.os'"),
    ("torch.nn.functional.torch.nn.Linear", "cannot import module"),
    ("auglabel.cli.sys.modules", "cannot import module"),
])
def test_functions_values_and_chains_inside_the_defaults_are_refused(tmp_path, capsys, class_path, fragment):
    _refused(capsys, tmp_path, _train_argv(tmp_path, class_path), fragment)


@pytest.mark.parametrize("class_path", [
    "torch.nn..Linear", ".torch.nn.Linear", "torch.nn.", "torch.nn.Linear ", "torch.nn.Linear\n",
    "builtins.__import__", "torch.nn.__builtins__", "torch.nn.Module.__subclasses__", "torch.nn.__class__",
    "torch.nn.Linear.__init__", "__import__", "ｔorch.nn.Linear", "torch.nn.Lin-ear", "torch/nn.Linear",
    "os.system;touch", "torch.nn.Linear()",
])
def test_malformed_and_dunder_paths_are_refused(tmp_path, capsys, class_path):
    _refused(capsys, tmp_path, _train_argv(tmp_path, class_path), "class_path must be")


def test_the_file_form_needs_plain_names_and_an_allowed_file(tmp_path):
    helper = TESTS / "security_helper.py"
    with allow_modules(f"{TESTS}/"):
        for bad in (f"{helper}:__import__", f"{helper}:TinyNet.__init__", f"{helper}:"):
            with pytest.raises(ConfigError, match="class_path must be"):
                resolve_class(bad)
        with pytest.raises(ConfigError, match="is a function, not a class"):
            resolve_class(f"{helper}:make_and_touch")
    with allow_modules(f"{tmp_path}/"):  # another folder: tests/ is not under it
        with pytest.raises(ConfigError, match="file .*security_helper.py.* is not allowed"):
            resolve_class(f"{helper}:TinyNet")
        with pytest.raises(ConfigError, match="is not allowed"):  # '..' cannot climb out of the folder
            resolve_class(f"{tmp_path}/{os.path.relpath(helper, tmp_path)}:TinyNet")


def test_an_nn_module_smuggled_into_an_allowed_module_is_refused(tmp_path, monkeypatch):
    """The class's own __module__ must be allowed, not just the module it was reached through."""
    (tmp_path / "smuggler_mod.py").write_text("from torch import nn\nclass Smuggled(nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import smuggler_mod

    monkeypatch.setattr(nn, "Smuggled", smuggler_mod.Smuggled, raising=False)
    with pytest.raises(ConfigError, match="defined in module 'smuggler_mod', which is not allowed"):
        resolve_class("torch.nn.Smuggled")
    with allow_modules("smuggler_mod"):
        assert resolve_class("torch.nn.Smuggled") is smuggler_mod.Smuggled


# ---------------------------------------------------------------- the config cannot widen the list

def test_a_config_file_cannot_allow_modules(tmp_path, capsys):
    config = tmp_path / "foreign.yaml"
    config.write_text(yaml.safe_dump({
        "allow_module": ["os"], "data": {"name": "digits", "val_size": 0.2}, "train": {"epochs": 1},
        "model": {"name": "custom", "params": {"class_path": "os.system",
                                               "init_args": {"command": f"touch {_pwned(tmp_path)}"}}},
    }))
    with pytest.raises(SystemExit) as exit_info:  # jsonargparse: "Option 'allow_module' is not accepted"
        main(["train", str(config), "--run_dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and "allow_module" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()
    raw = yaml.safe_load(config.read_text())
    del raw["allow_module"]
    for params in ({"allow_module": "os"}, {"allowed_modules": ["os"]}):  # nor can the model's params
        raw["model"]["params"].update(params)
        config.write_text(yaml.safe_dump(raw))
        _refused(capsys, tmp_path, ["train", str(config), "--run_dir", str(tmp_path / "run")], "is not allowed")
        del raw["model"]["params"][next(iter(params))]


def test_a_foreign_run_directory_runs_nothing_on_evaluate(tmp_path, capsys):
    run = tmp_path / "foreign_run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({
        "data": {"name": "digits", "val_size": 0.2},
        "model": {"name": "custom", "params": {"class_path": "subprocess.Popen",
                                               "init_args": {"args": ["touch", _pwned(tmp_path)]}}}}))
    for command in ("evaluate", "calibrate"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert "module 'subprocess' of class_path 'subprocess.Popen' is not allowed" in err
        assert len(err.splitlines()) == 1
    assert main(["train", "--run_dir", str(run), "--resume"]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_the_library_refuses_before_making_the_run_directory(tmp_path):
    cfg = ExperimentConfig(data=DataConfig(name="digits", val_size=0.2), train=TrainConfig(epochs=1),
                           model=ComponentConfig("custom", {"class_path": "os.system",
                                                            "init_args": {"command": f"touch {_pwned(tmp_path)}"}}))
    with pytest.raises(ConfigError, match="not allowed"):
        Trainer(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="not allowed"):
        build_model("custom", in_channels=1, num_classes=10, **cfg.model.params)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- what the user allows still works

def test_the_defaults_allow_torch_nn_and_auglabel_classes():
    assert DEFAULT_ALLOWED_MODULES == ("torch.nn", "torchvision.models", "timm", "auglabel")
    assert allowed_modules() == DEFAULT_ALLOWED_MODULES
    assert resolve_class("torch.nn.Linear") is nn.Linear
    assert resolve_class("torch.nn.modules.linear.Linear") is nn.Linear
    from auglabel.models.small_cnn import SmallCNN

    model = build_model("custom", in_channels=1, num_classes=10, class_path="auglabel.models.small_cnn.SmallCNN",
                        init_args={"in_channels": 1, "num_classes": 10, "width": 4})
    assert isinstance(model.module, SmallCNN) and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_an_allowed_user_module_trains_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    argv = _train_argv(tmp_path, "security_helper.TinyNet", {"hidden": 5})
    _refused(capsys, tmp_path, argv, "module 'security_helper' of class_path 'security_helper.TinyNet' is not allowed")
    assert main([*argv, "--allow_module", "security_helper"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert "allow_module" not in str(saved) and saved["model"]["params"]["class_path"] == "security_helper.TinyNet"
    assert allowed_modules() == DEFAULT_ALLOWED_MODULES  # the allowance ended with the command
    with pytest.raises(ConfigError, match="not allowed"):
        resolve_class("security_helper.TinyNet")


def test_allowing_by_environment_and_by_file(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv(ALLOW_MODULES_ENV, "mypkg.models, security_helper")
    assert allowed_modules() == (*DEFAULT_ALLOWED_MODULES, "mypkg.models", "security_helper")
    from security_helper import TinyNet

    assert resolve_class("security_helper.TinyNet") is TinyNet
    model = build_model("custom", in_channels=1, num_classes=3, class_path="security_helper.TinyNet",
                        init_args={"num_classes": 3})
    assert model.feature_dim == 6 and model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    monkeypatch.delenv(ALLOW_MODULES_ENV)
    file_path = f"{TESTS}/security_helper.py:TinyNet"
    with pytest.raises(ConfigError, match="no file is by default"):
        resolve_class(file_path)
    for entry in (f"{TESTS}/", str(TESTS / "security_helper.py")):  # a folder or the file itself
        with allow_modules(entry):
            assert resolve_class(file_path).__name__ == "TinyNet"
    # and from the command line: a folder entry
    argv = _train_argv(tmp_path, file_path, {"hidden": 4}, f"--allow_module={TESTS}/")
    assert main(argv) == 0 and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("argv_tail,fragment", [
    (["--allow_module"], "--allow_module needs a module prefix"),
    (["--allow_module", "--train.epochs", "1"], "--allow_module needs a module prefix"),
    (["--allow_module", "os..path"], "'os..path' is neither a module prefix"),
    (["--allow_module", "__builtins__"], "'__builtins__' is neither a module prefix"),
    (["--allow_module=,"], "is neither a module prefix"),
])
def test_bad_allow_module_values(tmp_path, capsys, argv_tail, fragment):
    _refused(capsys, tmp_path, _train_argv(tmp_path, "torch.nn.Linear", None, *argv_tail), fragment)


def test_bad_environment_entries(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ALLOW_MODULES_ENV, "good.mod,bad..mod")
    _refused(capsys, tmp_path, _train_argv(tmp_path, "os.system", _payloads(tmp_path)["os.system"]),
             f"{ALLOW_MODULES_ENV}: 'bad..mod' is neither a module prefix")


@pytest.mark.parametrize("text", ["data: evilmod_cfg.X\n", "model: {class_path: evilmod_cfg.X}\n",
                                  "labels: {class_path: evilmod_cfg.X, init_args: {}}\n", "- a list\n"])
def test_a_config_file_cannot_make_the_parser_import_a_module(tmp_path, monkeypatch, capsys, text):
    """jsonargparse would import a module a config names as a class_path (running its top level)."""
    sentinel = tmp_path / "pwned"
    (tmp_path / "evilmod_cfg.py").write_text(f"open({str(sentinel)!r}, 'w').close()\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "a.yaml"
    config.write_text(text)
    assert main(["train", str(config), "--run_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auglabel: error:") and len(err.splitlines()) == 1
    assert not sentinel.exists() and not (tmp_path / "run").exists()
