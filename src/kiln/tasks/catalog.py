"""The TASKS catalog: the data's task name (``DataSpec.task``) to the Task that trains it.

Every factory has the signature ``build(spec: DataSpec, loss_cfg: LossConfig) -> Task``. Entries
are ``package.module:attr`` strings, so naming a task imports none. Adding a task is one module (a
class following ``kiln.tasks.base.Task``) and one registration here.
"""

from __future__ import annotations

from kiln.catalog import Catalog
from kiln.tasks.base import Task

TASKS: Catalog[Task] = Catalog("task")
TASKS.register("classification", "kiln.tasks.supervised:SupervisedTask",
               "one class per sample: cross-entropy (or focal) loss; loss and accuracy")
TASKS.register("binary", "kiln.tasks.supervised:SupervisedTask",
               "yes or no per sample, one logit: BCE (or focal) loss; loss and accuracy")
TASKS.register("regression", "kiln.tasks.supervised:SupervisedTask",
               "a continuous target: MSE (or MAE) loss; loss, MAE and RMSE")
TASKS.register("language_modeling", "kiln.tasks.language_modeling:LanguageModelingTask",
               "next-token prediction: cross-entropy per token; loss, perplexity and accuracy")
