"""The benchmark records say which CPU they were measured on (benchmarks/harness.py)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import harness  # noqa: E402  (benchmarks/ is not a package on the path)
import make_table  # noqa: E402


def _cpuinfo(tmp_path, flags):
  path = tmp_path / "cpuinfo"
  path.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n"
                  f"flags\t\t: fpu sse4_2 {flags}\n\nprocessor\t: 1\n")
  return str(path)


def test_cpu_info_names_the_model_and_the_widest_vector_isa(tmp_path):
  assert harness.cpu_info(_cpuinfo(tmp_path, "avx avx2 avx512f avx512bw")) == {
      "cpu_model": "Some CPU 9000", "cpu_isa": "avx512"}
  assert harness.cpu_info(_cpuinfo(tmp_path, "avx avx2 fma"))["cpu_isa"] == "avx2"
  assert harness.cpu_info(str(tmp_path / "absent")) == {}


def test_the_table_footer_names_the_cpu_or_says_it_was_not_recorded():
  new = {"machine": {"cpu_count": 2, "cpu_model": "AMD EPYC", "cpu_isa": "avx2"}}
  assert make_table._cpu(new) == "2 cores of AMD EPYC (avx2)"  # pylint: disable=protected-access
  assert "not recorded" in make_table._cpu({"machine": {"cpu_count": 2}})  # pylint: disable=protected-access
