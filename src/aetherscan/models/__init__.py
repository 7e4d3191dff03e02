"""Fast3R: our PyTorch implementation that loads the released checkpoint unchanged."""
