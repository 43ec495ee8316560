"""The README's Library examples run as written (in order, in one namespace)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_blocks() -> list[str]:
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("## Library"):]
  section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
  return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_library_examples_run(capsys):
  blocks = _library_blocks()
  assert len(blocks) >= 6
  namespace: dict = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "conv4" in out and "(8, 1, 1, 512)" in out
