"""trainer: datasets, teacher and student models, distillation and the training loops."""
