"""E-Tree recipe (thin wrapper): ``python trainers/etree.py --config trainers/configs/etree_smoke.yaml``.

Also ``torchrun --standalone --nproc_per_node N trainers/etree.py --config ...`` and
``accelerate launch --multi_gpu --num_processes N trainers/etree.py --config ...``. The logic lives
in :mod:`kwaiformers.federated.recipe` (same as ``kwaiformers train etree``).
"""

import argparse
import sys

from kwaiformers.federated import recipe

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recipe.add_arguments(parser)
    sys.exit(recipe.run(parser.parse_args()))
