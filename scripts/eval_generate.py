"""Snakemake entry point of rule `eval_generate`; the logic is distillab.evaluate.eval_generate_from_snakemake."""

from distillab.entry import run
from distillab.evaluate import eval_generate_from_snakemake

run(snakemake, eval_generate_from_snakemake)  # noqa: F821 -- `snakemake` is injected by the script: directive
