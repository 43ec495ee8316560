"""Evaluate: `python evaluate.py --config=configs/X.py[:arg] --workdir=DIR [--config.k=v]`."""
from jaxconcepts.programs import cli

if __name__ == "__main__":
  cli.evaluate_main()
