# Shared names and input functions. All logic lives in the distillab package.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs (local, conda envs, SLURM with --export=ALL) import the package from this checkout.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)

from distillab.am_format import AM_FILES
from distillab.config import validate_config
from distillab.workflow import Study, code_version, export_pythonpath

export_pythonpath(SRC)

validate_config(config)
S = Study(config)
R = S.root
TEACHERS = S.teachers
SHARDS = S.shards


wildcard_constraints:
    teacher="|".join(S.teachers),
    student="|".join(S.students),
    model="[^/]+",
    round=r"\d+",
    shard=r"\d+",
    part=r"\d+",
    source="[^/]+",
    benchmark="|".join(S.benchmarks),
