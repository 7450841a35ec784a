"""Post-training steps that keep a compressed network working without labels: sequential anchored factorization,
bias correction, BatchNorm correction and block reconstruction, in one walk (:func:`posttrain`)."""
from core.posttrain.batchnorm import MODES as BATCHNORM_MODES
from core.posttrain.pipeline import NONE, Entry, PostTrain, PostTrainReport, posttrain
from core.posttrain.walk import as_batches

__all__ = ["BATCHNORM_MODES", "NONE", "Entry", "PostTrain", "PostTrainReport", "as_batches", "posttrain"]
