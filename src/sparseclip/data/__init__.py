"""Datasets: the procedural world and evaluation sets derived from it."""

from .tasks import TASK_NAMES, RetrievalSet, ZeroShotTask, retrieval_set, zero_shot_task
from .world import CONCEPTS, World

__all__ = ["CONCEPTS", "TASK_NAMES", "RetrievalSet", "World", "ZeroShotTask", "retrieval_set",
           "zero_shot_task"]
