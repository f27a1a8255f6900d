"""Thin wrapper: `python trainers/gppo.py --config trainers/configs/<file>.yaml` ==
`kwaiformers train gppo --config ...` (logic in `kwaiformers.trainers.gppo_recipe`)."""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "gppo", *sys.argv[1:]]))
