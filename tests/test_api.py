"""The curated public API: `jaxconcepts.__all__` is documented and importable."""

import inspect

import jaxconcepts as jc


def test_all_lists_the_public_api():
  assert len(jc.__all__) >= 20
  assert len(set(jc.__all__)) == len(jc.__all__)
  for name in jc.__all__:
    assert hasattr(jc, name), name


def test_every_public_name_has_a_docstring():
  missing = [n for n in jc.__all__ if not inspect.getdoc(getattr(jc, n))]
  assert not missing, f"no docstring: {missing}"


def test_every_public_function_documents_its_arguments_or_is_short():
  """Functions with more than two arguments say what they take (Google style `Args:`)."""
  undocumented = []
  for name in jc.__all__:
    obj = getattr(jc, name)
    if not inspect.isfunction(obj):
      continue
    params = [p for p in inspect.signature(obj).parameters if p not in ("self",)]
    doc = inspect.getdoc(obj) or ""
    if len(params) > 2 and "Args:" not in doc and "Arguments:" not in doc:
      undocumented.append(name)
  assert not undocumented, f"no Args section: {undocumented}"
