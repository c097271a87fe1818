"""Tasks own the problem-specific parts: model head, loss default, decoding, metrics."""

from dentpy.tasks.segmentation import SegmentationTask, build_segmentation_task

__all__ = ["SegmentationTask", "build_segmentation_task"]
