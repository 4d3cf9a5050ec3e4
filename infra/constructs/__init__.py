"""One construct per AWS concern; the stacks in infra/stacks.py only wire them together."""
