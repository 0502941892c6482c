"""Integer-only Relax passes: calibrate a float Segmenter on one image and rewrite it to integers."""
