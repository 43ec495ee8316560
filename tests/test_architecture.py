"""The package's layers: a module imports only from its own layer or the layers below it."""

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxconcepts")

# Lowest first (README "Architecture").
LAYERS = ("utils", "ops", "models", "data", "train", "methods", "report", "evaluators",
          "programs")


def _layer(module: str) -> str:
  """'jaxconcepts.ops.nmf' -> 'ops'; 'jaxconcepts.report' -> 'report'."""
  return module.split(".")[1]


def _modules():
  for root, _, files in os.walk(PKG):
    for name in sorted(files):
      if name.endswith(".py") and name != "__init__.py":
        path = os.path.join(root, name)
        rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
        yield rel, path


def _imports(path: str) -> list[str]:
  with open(path) as f:
    tree = ast.parse(f.read())
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxconcepts"):
      out += ([f"{node.module}.{a.name}" for a in node.names] if node.module == "jaxconcepts"
              else [node.module])
    elif isinstance(node, ast.Import):
      out += [a.name for a in node.names if a.name.startswith("jaxconcepts")]
  return out


@pytest.mark.parametrize("module, path", list(_modules()))
def test_module_imports_only_from_its_layer_or_below(module, path):
  own = LAYERS.index(_layer(module))
  upward = [m for m in _imports(path) if LAYERS.index(_layer(m)) > own]
  assert not upward, f"{module} imports from a higher layer: {upward}"


def test_every_module_is_in_a_known_layer_and_small():
  for module, path in _modules():
    assert _layer(module) in LAYERS, module
    with open(path) as f:
      assert sum(1 for _ in f) <= 620, f"{module} is over 600 lines"
