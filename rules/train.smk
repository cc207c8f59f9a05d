from distillab import train as TRAIN

# A student whose gpus x nodes cannot reach its global batch exactly fails here, when
# the Snakefile loads, not hours later in its job.
TRAIN.check_students(config)


rule train:
    # TRL SFTTrainer: one student per teacher, loss on the final assistant turn only.
    # One process (CPU, one GPU) trains in the job; gpus x nodes > 1 runs `accelerate
    # launch` (configs/accelerate/), across nodes through `srun` (distillab.train).
    input:
        dataset=f"{R}/parallel/{{teacher}}.parquet",
        model=lambda w: S.model_dir(config["students"][w.student]["model"]),
    output:
        checkpoint=directory(f"{R}/train/{{student}}__{{teacher}}"),
    log:
        f"{R}/logs/train/{{student}}__{{teacher}}.log",
    priority: 10
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=1440,
        # total GPUs (sbatch --gpus), nodes, and for several nodes an `mpi` job with one
        # task per node (distillab.train.job_resources); None leaves a resource unset
        gpu=lambda w: TRAIN.student_resource(config, w.student, "gpu"),
        nodes=lambda w: TRAIN.student_resource(config, w.student, "nodes"),
        mpi=lambda w: TRAIN.student_resource(config, w.student, "mpi"),
        tasks=lambda w: TRAIN.student_resource(config, w.student, "tasks"),
        tasks_per_gpu=lambda w: TRAIN.student_resource(
            config, w.student, "tasks_per_gpu"
        ),
    params:
        training=lambda w: config["students"][w.student]["training"],
        # the launch plan and accelerate config hash (None for one process)
        launch=lambda w: TRAIN.launch_params(config["students"][w.student]["training"]),
        seed=config["seed"],
        code=code_version("distillab.train"),
    script:
        "../scripts/train.py"
