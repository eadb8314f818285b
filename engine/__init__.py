"""What runs the method fast and safe: the command line, a row of Table I in its run folder (resume, shards,
locks, training processes), folds on the device (CUDA graphs, streams), checkpoints and stop signals, the feature
cache, ImageNet weights and model.pt. It calls the method; the method never calls it."""
