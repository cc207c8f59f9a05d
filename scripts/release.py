"""Snakemake entry point of rule `release`; the logic is distillab.release.release_from_snakemake."""

from distillab.entry import run
from distillab.release import release_from_snakemake

run(snakemake, release_from_snakemake)  # noqa: F821 -- `snakemake` is injected by the script: directive
