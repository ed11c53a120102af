"""Re-ID evaluation: cosine ranking with junk removal, mAP / rank-k / mINP, ATRW submission."""

from reid.evaluation.evaluate import EvaluationResult, evaluate_features
from reid.evaluation.protocols import PROTOCOLS
from reid.evaluation.rankings import Rankings
from reid.evaluation.submission import atrw_submission

__all__ = ["PROTOCOLS", "EvaluationResult", "Rankings", "atrw_submission", "evaluate_features"]
