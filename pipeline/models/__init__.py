"""The models of the method: U-Net, Clay v1.5 encoder, Clay segmenter, hybrid, LoRA, registry."""
