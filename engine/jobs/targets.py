"""The job targets (``module:function``) of the engine's long-running work, each named once.

Light on purpose: planning code names a target without importing the (torch-heavy) module that runs it.
"""

C_EVALUATION = "engine.correspondence.evaluate:run_job"
PROJECTOR_TRAINING = "engine.alignment.train:run_job"
A_V3_LOGLIK = "engine.alignment.evaluate:loglik_job"
A_V1 = "engine.alignment.evaluate:a_v1_job"
SWEEP = "engine.sweep.run:run_job"
DEMO_COUNT = "engine.jobs.demo:count"

ALL = (C_EVALUATION, PROJECTOR_TRAINING, A_V3_LOGLIK, A_V1, SWEEP, DEMO_COUNT)
