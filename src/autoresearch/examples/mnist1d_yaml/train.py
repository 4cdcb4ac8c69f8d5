"""Train an MNIST-1D classifier for a fixed wall-clock budget, then report val accuracy.

The config-driven twin of the MNIST-1D example: the knobs come from a YAML file given with
`--config` (python train.py --config config.yaml), the way Hydra- or Lightning-style projects
keep them. The agent edits config.yaml; this file stays as it is.

The training code is the MNIST-1D example's own train.py, copied beside this file as
mnist1d_train.py (`autoresearch demo` does it): it runs with the values of config.yaml in place
of its constants, so the two examples train the very same model.
"""

import argparse
import re
from pathlib import Path

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="config.yaml", help="YAML file with the knobs")
CFG = yaml.safe_load(open(parser.parse_args().config))
KNOBS = {
    "ARCH": CFG["model"]["arch"], "WIDTH": CFG["model"]["width"], "DEPTH": CFG["model"]["depth"],
    "DROPOUT": CFG["model"]["dropout"], "OPTIMIZER": CFG["optimizer"]["name"], "LR": CFG["optimizer"]["lr"],
    "WEIGHT_DECAY": CFG["optimizer"]["weight_decay"], "BATCH_SIZE": CFG["batch_size"], "SEED": CFG["seed"],
}

code = Path(__file__).with_name("mnist1d_train.py")
source = code.read_text()
for name, value in KNOBS.items():
    source, found = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", source)
    if found != 1:
        raise SystemExit(f"{code}: expected one `{name} = ...` line, found {found}")
exec(compile(source, str(code), "exec"), {"__name__": "__main__", "__file__": str(code)})
