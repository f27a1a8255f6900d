"""Thin wrapper: `python trainers/onerec_rl.py --config trainers/configs/onerec_v2_gbpo.yaml` ==
`kwaiformers train onerec-rl --config ...` (logic in `kwaiformers.trainers.onerec_rl_recipe`)."""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "onerec-rl", *sys.argv[1:]]))
