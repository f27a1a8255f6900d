"""E-Tree: tree-structured decentralised aggregation, KMA clustering and baselines."""
