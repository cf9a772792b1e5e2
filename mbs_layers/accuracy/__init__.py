"""Accuracy per parameter (docs/accuracy.md): three experiments.

* ``projection`` — Frobenius and data-aware output error of each format's best approximation
  of Gaussian and pretrained weight matrices, against its parameter count;
* ``pretrain`` — a small ViT trained from scratch with structured Q/K/V and MLP linears;
* ``finetune`` — a pretrained transformer's linears projected into a format, then fine-tuned.

Each writes accuracy records (``mbs_layers.records.ACCURACY_KEYS`` plus extras) to an
append-only JSONL store, one point at a time, so a killed run resumes where it stopped.
"""
