"""The registry core and the config contracts plugins rely on: built-in names import no plugin, `import
clutune` stays light, the dataset and model sections carry a plugin's own keys without changing old hashes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clutune.clu.methods import METHODS, get_method
from clutune.core.config import Config, DatasetConfig, ModelConfig
from clutune.data import DATASETS, load_dataset
from clutune.errors import UserError
from clutune.models import MODELS
from clutune.plugins.registry import BUILT_IN, Registry


def test_a_built_in_name_reads_the_entry_points_once_and_imports_none():
    registry = Registry("clutune.test_group", "thing", {"a": "clutune.errors:UserError"}, lambda obj, name: None)
    assert registry._plugins is None
    assert registry.get("a") is UserError
    assert registry._plugins == {}  # read (a package claiming 'a' would be refused there), nothing imported
    assert registry.origin("a") == BUILT_IN
    with pytest.raises(UserError, match=r"^unknown thing 'b'; known: a$"):
        registry.get("b")


def test_every_registry_lists_its_built_ins():
    assert {"er", "ugclu", "clpu"} <= set(METHODS.names())
    assert {"mlp", "cnn", "resnet18_cifar", "airbench", "torchvision"} <= set(MODELS.names())
    assert {"digits", "mnist1d", "cifar10", "tinyimagenet"} <= set(DATASETS.names())
    assert get_method("er").name == "er"


def test_import_clutune_is_light_and_exports_the_method_contract():
    code = (
        "import sys, clutune; heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules];"
        "from clutune import Method, BaseHparams; import clutune.clu.methods as m;"
        "print(heavy, Method is m.Method and BaseHparams is m.BaseHparams, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] True False"


def test_dataset_section_carries_a_readers_keys_and_refuses_typos():
    section = DatasetConfig.build({"name": "npz", "path": "data.npz"}, prefix="dataset")
    assert (section.name, section.path) == ("npz", "data.npz")
    section = DatasetConfig.build({"name": "mine", "options": {"split": 2}}, prefix="dataset")
    assert section.options == {"split": 2}
    with pytest.raises(UserError, match="unknown config key 'dataset.pth'"):
        DatasetConfig.build({"name": "npz", "pth": "data.npz"}, prefix="dataset")
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_unset_new_keys_leave_hashes_and_model_specs_as_before():
    config = Config()
    assert "options" not in config.model.spec() and "path" not in config.model.spec()
    assert config.model.spec() == {"name": "mlp", "hidden": [128], "width": 32}
    with_options = Config(model=ModelConfig(options={"width": 3}))
    assert with_options.model.spec()["options"] == {"width": 3}
    assert with_options.hash() != config.hash()
    with_path = Config(dataset=DatasetConfig(name="npz", path="a.npz"))
    assert with_path.hash() != Config(dataset=DatasetConfig(name="npz", path="b.npz")).hash()
