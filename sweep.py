"""Sweep: `python sweep.py --config=configs/X.py[:arg] --workdir=DIR [--address=A] [--metric=M]`.

Runs the trials that the config's `get_sweep(arg)` declares on Ray Tune (an embedded local Ray,
or the cluster at --address), each as train + evaluate in DIR/trials/<name>; see
jaxconcepts/programs/sweep.py.
"""
from jaxconcepts.programs import sweep

if __name__ == "__main__":
  sweep.main()
