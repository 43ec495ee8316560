"""Train: `python train.py --config=configs/X.py[:arg] --workdir=DIR [--config.k=v]`."""
from jaxconcepts.programs import cli

if __name__ == "__main__":
  cli.train_main()
