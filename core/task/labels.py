"""The label placeholder of data sets without labels."""

NO_LABEL = -1
"""Label of every sample of an unlabelled data set (``photos``): datasets keep yielding ``(image, int)`` pairs,
and a task that needs labels refuses it (see :attr:`core.task.base.Task.needs_labels`). It belongs to the tasks, which read it, so that scoring
needs no data loader."""
