"""`dentpy pretrain`: self-supervised pretraining from images only (labels are never read).

3D segmentation networks learn masked-volume reconstruction (`masked3d`); 2D classifiers
learn SimCLR contrastive features (`contrastive2d`). `run.pretrain` picks the method,
gathers the label-free data (`data`) and writes the run folder; `dentpy.pretrained` loads
the result into a model for fine-tuning (`model.pretrained`).
"""
