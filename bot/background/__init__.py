"""What runs in rq workers: the pipeline's step list, the jobs, the sweeper."""
