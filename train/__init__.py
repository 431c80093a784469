"""gi_sdk.train: data -> LoRA fine-tuning -> merged checkpoint. Needs `pip install "gi-sdk[train]"`."""
